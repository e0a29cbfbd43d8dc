"""MovieLens's own item files, as they ship: ML-100K's ``u.item`` and ML-1M's ``movies.dat``.

Neither has a header, so the generic item reader (which finds the item id column by name) would
refuse them. They are recognised from their sniffed shape instead and read into two attributes,
``title`` and ``genre`` (several genres joined with ``|``, as in any items file):

``u.item``
    Pipe-separated, latin-1, 24 fields: movie id | title | release date | video release date |
    IMDb URL | 19 genre flags (0/1) in the order of ``u.genre``: :data:`ML100K_GENRES`.
``movies.dat``
    ``MovieID::Title::Genres``, latin-1, genres ``|``-separated from :data:`ML_GENRES` (ML-10M's
    ``movies.dat`` has the same shape, in UTF-8).

Both are recognised only when every sampled line fits: an integer id, and 0/1 flags or known
genre names, so an ordinary headerless file is never mistaken for one.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa

from mfrec.train.errors import DataValidationError
from mfrec.train.ingest.formats import SourceFile

logger = logging.getLogger(__name__)

#: ML-100K's ``u.genre``, in the order of ``u.item``'s flag columns.
ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
#: The genres of ML-1M's (and ML-10M's) ``movies.dat``.
ML_GENRES = frozenset(ML100K_GENRES[1:]) | {"IMAX", "(no genres listed)"}
_UITEM_FIELDS = 5 + len(ML100K_GENRES)


def movielens_kind(source: SourceFile) -> str | None:
    """``"u.item"``, ``"movies.dat"`` or None, from a sniffed file's shape and sample rows."""
    if source.kind != "csv" or source.has_header or not source.sample_rows:
        return None
    rows = source.sample_rows
    if source.delimiter == "|" and all(
        len(row) == _UITEM_FIELDS and row[0].strip().isdigit() and set(row[5:]) <= {"0", "1"}
        for row in rows
    ):
        return "u.item"
    if source.delimiter == "::" and all(
        len(row) == 3 and row[0].strip().isdigit() and set(row[2].strip().split("|")) <= ML_GENRES
        for row in rows
    ):
        return "movies.dat"
    return None


def read_movielens_items(
    source: SourceFile, kind: str, name: str
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(item ids, ``{"title": ..., "genre": ...}``) of a file :func:`movielens_kind` recognised.

    Raises
    ------
    DataValidationError
        A line past the sniffed sample does not have the format's shape; the message names it.
    """
    with pa.input_stream(source.path, compression=source.compression) as stream:
        data = stream.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # what MovieLens 100K and 1M are written in
    ids, titles, genres = [], [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("|") if kind == "u.item" else line.split("::")
        if kind == "u.item" and len(fields) == _UITEM_FIELDS:
            flags = fields[5:]
            names = [genre for genre, flag in zip(ML100K_GENRES, flags, strict=True) if flag == "1"]
        elif kind == "movies.dat" and len(fields) == 3:
            names = [genre for genre in fields[2].strip().split("|") if genre]
        else:
            shape = (
                f"{_UITEM_FIELDS} '|'-separated fields (id|title|release date|video release "
                f"date|IMDb URL|19 genre flags)"
                if kind == "u.item"
                else "3 '::'-separated fields (MovieID::Title::Genres)"
            )
            raise DataValidationError(
                f"item metadata file {name} reads as MovieLens {kind}, but line {number} has "
                f"{len(fields)} fields, not {shape}: {line[:80]!r}. Fix that line, or give the "
                f"file a header row (item_id,title,genre) to read it as an ordinary items file."
            )
        ids.append(fields[0].strip())
        titles.append(fields[1].strip())
        genres.append("|".join(names))
    logger.info(
        "item metadata file %s: MovieLens %s (%s, no header): %d items with title and genre",
        name,
        kind,
        "pipe-separated, 19 genre flags" if kind == "u.item" else "'::'-separated",
        len(ids),
    )
    ids, titles, genres = (np.asarray(v, dtype=object) for v in (ids, titles, genres))
    return ids, {"title": titles, "genre": genres}
