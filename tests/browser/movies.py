"""A small movie model with titles, genres, dates and trending counts, for the web page's
tests (not a test module). Item vectors are the genres' one-hot rows, so items that share
genres are similar; each user's vector is the sum of the user's items."""

from __future__ import annotations

import numpy as np

from mfrec.serve.webcatalog import SEEN_TIMESTAMPS
from mfrec.train.artifact import ATTRIBUTE_PREFIX, TRENDING, ModelArtifact

HOSTILE = '<img src=x onerror="window.pwned=1"> & "Quoted" (2001)'
MOVIES = [  # (item id, title, genres)
    ("50", "Star Wars (1977)", "Action|Sci-Fi"),
    ("222", "Star Trek: First Contact (1996)", "Action|Sci-Fi"),
    ("1", "Toy Story (1995)", "Animation|Comedy"),
    ("100", "Fargo (1996)", "Crime|Drama"),
    ("258", "Contact (1997)", "Drama|Sci-Fi"),
    ("288", "Scream (1996)", "Horror"),
    ("8", "Babe (1995)", "Comedy|Drama"),
    ("6", "Heat (1995)", "Action|Crime"),
    ("183", "Alien (1979)", "Horror|Sci-Fi"),
    ("99", "Clueless (1995)", "Comedy"),
    ("901", HOSTILE, "Comedy"),
    ("902", "Amélie (2001)", "Comedy|Romance"),
]
HISTORIES = {  # user id: [(item id, day)], day = days after 1997-09-20
    "196": [("50", 3), ("222", 9), ("183", 1)],
    "186": [("1", 2), ("8", 5), ("99", 4)],
    "22": [("100", 7), ("6", 6)],
    "244": [("288", 8), ("258", 2), ("50", 1), ("1", 3)],
}
START = 874_713_600  # 1997-09-20 00:00 UTC


def movie_model(dates: bool = True) -> ModelArtifact:
    """The artifact (``dates=False``: without ``seen_timestamps``)."""
    item_ids = [m[0] for m in MOVIES]
    genres = sorted({g for m in MOVIES for g in m[2].split("|")})
    items = np.array(
        [[float(g in m[2].split("|")) for g in genres] for m in MOVIES], dtype=np.float32
    )
    items += np.linspace(0, 0.05, len(MOVIES), dtype=np.float32)[:, None]  # no exact ties
    user_ids = list(HISTORIES)
    indptr, indices, times = [0], [], []
    for history in HISTORIES.values():
        for idx, day in sorted((item_ids.index(i), d) for i, d in history):
            indices.append(idx)
            times.append(START + day * 86_400)
        indptr.append(len(indices))
    users = np.stack(
        [items[indices[a:b]].sum(0) for a, b in zip(indptr[:-1], indptr[1:], strict=True)]
    )
    popularity = np.bincount(indices, minlength=len(MOVIES)).astype(np.float32) * 100 + 1234
    extra = {
        ATTRIBUTE_PREFIX + "title": np.array([m[1] for m in MOVIES]),
        ATTRIBUTE_PREFIX + "genre": np.array([m[2] for m in MOVIES]),
        TRENDING: np.linspace(3.25, 0.5, len(MOVIES))[::-1].copy(),
    }
    if dates:
        extra[SEEN_TIMESTAMPS] = np.array(times, dtype=np.int64)
    return ModelArtifact(
        users,
        items,
        np.zeros(len(users), np.float32),
        np.zeros(len(MOVIES), np.float32),
        np.array(user_ids),
        np.array(item_ids),
        popularity,
        np.array(indptr),
        np.array(indices),
        extra=extra,
    )
