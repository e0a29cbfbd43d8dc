"""Synthetic interactions with a planted structure, deterministic from a seed, streamed in blocks.

The generative model (what a good recommender can recover, and popularity cannot):

* items: a power-law popularity ``(rank + 1) ** -0.9`` over a random order, and one of
  ``num_topics`` topics each (topics of equal size);
* users: a heavy-tailed activity (log-normal weights, at least ``min(5, N / num_users)``
  interactions each, at most half the catalogue) and a latent taste: a primary and a secondary
  topic, chosen with a mild skew towards the first topics, the primary taken with probability
  0.55-0.9;
* each interaction: with probability 0.15 a globally popular item, otherwise an item of one of the
  user's two topics drawn by popularity within that topic; a user's repeated items are redrawn
  (a few repeats may remain for users whose activity approaches their topics' size);
* timestamps: each user is active over a random window of 2020-2021; their interactions are
  strictly increasing Unix seconds in that window, or, with ``timestamp_resolution`` (seconds,
  e.g. 86_400 for days), those seconds rounded down to a multiple of it: non-decreasing, with
  ties in file order (a day resolution gives midnight UTC, as Unix time 0 is midnight UTC).

The user x item probability matrix therefore has rank ~``num_topics``, so matrix factorisation
learns it while the popularity baseline only sees the marginal. Rows are grouped by user (ids
``1..num_users``, items ``1..num_items``), in blocks of about a million rows, so 100M rows never
sit in memory at once. The same arguments give byte-identical files.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from mfrec.train.errors import ConfigError

logger = logging.getLogger(__name__)

START = 1_577_836_800  # 2020-01-01T00:00:00Z
SPAN = 2 * 365 * 86_400
ROWS_PER_BLOCK = 1_000_000
NOISE = 0.15
POPULARITY_EXPONENT = 0.9
GENRES = (
    "Action",
    "Comedy",
    "Drama",
    "Documentary",
    "Horror",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "Animation",
    "Family",
    "Fantasy",
    "Crime",
    "Music",
    "Western",
    "War",
    "Mystery",
    "History",
    "Sport",
    "Adventure",
    "Biography",
)
_ADJECTIVES = (
    "Silent",
    "Golden",
    "Last",
    "Hidden",
    "Broken",
    "Wild",
    "Distant",
    "Crimson",
    "Lost",
    "Bright",
    "Frozen",
    "Secret",
    "Burning",
    "Quiet",
    "Endless",
    "Little",
)
_NOUNS = (
    "River",
    "Empire",
    "Garden",
    "Signal",
    "Harbor",
    "Machine",
    "Summer",
    "Kingdom",
    "Echo",
    "Voyage",
    "Mirror",
    "Forest",
    "Station",
    "Letter",
    "Island",
    "Horizon",
)
SCHEMA = pa.schema([("user_id", pa.int64()), ("item_id", pa.int64()), ("timestamp", pa.int64())])


@dataclass(frozen=True)
class SynthSpec:
    """Sizes of a synthetic dataset; ``resolve`` fills the defaults from ``num_interactions``.

    ``timestamp_resolution`` is in seconds: 1 keeps every second, 86_400 rounds each timestamp
    down to its day's midnight UTC.
    """

    num_interactions: int
    num_users: int
    num_items: int
    num_topics: int
    seed: int = 0
    timestamp_resolution: int = 1

    @classmethod
    def resolve(
        cls,
        num_interactions,
        num_users=None,
        num_items=None,
        seed=0,
        num_topics=None,
        timestamp_resolution=1,
    ):
        n = int(num_interactions)
        resolution = int(timestamp_resolution)
        if resolution < 1 or resolution != timestamp_resolution:
            raise ConfigError(
                f"timestamp_resolution={timestamp_resolution!r} must be a whole number of "
                "seconds >= 1 (86400 for days)"
            )
        num_users = int(num_users) if num_users else max(25, n // 40)
        num_items = int(num_items) if num_items else max(100, n // 100)
        if n < 1 or num_users < 1 or num_items < 2:
            raise ConfigError("num_interactions and num_users must be >= 1, num_items >= 2")
        if n < num_users:
            raise ConfigError(
                f"num_interactions ({n}) must be at least num_users ({num_users}): every user "
                f"has at least one interaction"
            )
        if num_topics is None:
            num_topics = int(np.clip(round(math.sqrt(num_items) / 2), 2, 64))
        num_topics = max(1, min(int(num_topics), num_items))
        return cls(n, num_users, num_items, num_topics, int(seed), resolution)


class _Plan:
    """The latent structure shared by every block (items, topics, users' tastes and activity)."""

    def __init__(self, spec: SynthSpec) -> None:
        self.spec = spec
        num_items, k = spec.num_items, spec.num_topics
        self.popularity, self.item_topic = _items(spec.seed, num_items, k)
        # Items grouped by topic; cdf = topic + cumulative share within the topic, so one
        # searchsorted on topic + u (u uniform in [0, 1)) draws an item of that topic.
        self.by_topic = np.argsort(self.item_topic, kind="stable")
        topics = self.item_topic[self.by_topic]
        weights = self.popularity[self.by_topic]
        totals = np.bincount(topics, weights=weights, minlength=k)
        cum = np.cumsum(weights) - np.concatenate([[0.0], np.cumsum(totals)[:-1]])[topics]
        self.topic_cdf = topics + cum / totals[topics]
        ends = np.flatnonzero(np.r_[topics[1:] != topics[:-1], True])
        self.topic_cdf[ends] = topics[ends] + 1.0
        self.global_cdf = np.cumsum(self.popularity) / self.popularity.sum()
        self.global_cdf[-1] = 1.0

        rng = np.random.default_rng([spec.seed, 0, 1])
        topic_share = (np.arange(k) + 1.0) ** -0.5
        topic_share /= topic_share.sum()
        self.primary = rng.choice(k, size=spec.num_users, p=topic_share)
        self.secondary = rng.choice(k, size=spec.num_users, p=topic_share)
        self.primary_share = rng.uniform(0.55, 0.9, size=spec.num_users)
        self.counts = _activity(rng, spec)
        self.window_start = START + rng.uniform(0, 0.7, spec.num_users) * SPAN
        self.window_length = rng.uniform(0.05, 1.0, spec.num_users) * (
            START + SPAN - self.window_start
        )

    def draw(self, rng: np.random.Generator, users: np.ndarray, uniform: bool = False):
        """One item index per entry of ``users``."""
        n, num_items = len(users), self.spec.num_items
        if uniform:
            return rng.integers(num_items, size=n)
        topic = np.where(
            rng.random(n) < self.primary_share[users], self.primary[users], self.secondary[users]
        )
        position = np.searchsorted(self.topic_cdf, topic + rng.random(n), side="right")
        items = self.by_topic[np.minimum(position, num_items - 1)]
        noisy = rng.random(n) < NOISE
        drawn = np.searchsorted(self.global_cdf, rng.random(int(noisy.sum())), side="right")
        items[noisy] = np.minimum(drawn, num_items - 1)
        return items

    def block(self, index: int, first_user: int, end_user: int) -> pa.Table:
        """Rows of users ``first_user .. end_user - 1`` (user, then time order)."""
        rng = np.random.default_rng([self.spec.seed, 1, index])
        counts = self.counts[first_user:end_user]
        local = np.repeat(np.arange(len(counts)), counts)
        users = local + first_user
        items = self.draw(rng, users)
        rows = np.arange(len(users))  # rows of users that may still have repeats
        for attempt in range(40):  # redraw repeated (user, item) pairs
            keys = users[rows] * self.spec.num_items + items[rows]
            repeated = rows[_later_repeats(keys)]
            if len(repeated) == 0:
                break
            items[repeated] = self.draw(rng, users[repeated], uniform=attempt >= 10)
            affected = np.zeros(len(counts), dtype=bool)
            affected[local[repeated]] = True
            rows = np.flatnonzero(affected[local])
        within = np.sort(local + rng.random(len(local))) - local  # sorted per user, in [0, 1)
        seconds = np.floor(self.window_start[users] + within * self.window_length[users]).astype(
            np.int64
        )
        # Strictly increasing per user: ts - position must not decrease within a user.
        segment_start = np.repeat(np.cumsum(counts) - counts, counts)
        position = np.arange(len(local)) - segment_start
        offset = local.astype(np.int64) << 40
        shifted = np.maximum.accumulate(seconds - position + offset)
        seconds = shifted - offset + position
        if self.spec.timestamp_resolution > 1:
            seconds -= seconds % self.spec.timestamp_resolution
        return pa.table([users + 1, items + 1, seconds], schema=SCHEMA)

    def blocks(self) -> Iterator[pa.Table]:
        ends = np.cumsum(self.counts)
        targets = np.arange(ROWS_PER_BLOCK, ends[-1], ROWS_PER_BLOCK)
        bounds = np.unique(np.r_[0, np.searchsorted(ends, targets, side="right"), len(ends)])
        for index, (first, end) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            yield self.block(index, int(first), int(end))


def _later_repeats(keys: np.ndarray) -> np.ndarray:
    """Positions of the keys that already appeared earlier in ``keys``."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    return order[1:][ordered[1:] == ordered[:-1]]


def _items(seed: int, num_items: int, num_topics: int) -> tuple[np.ndarray, np.ndarray]:
    """Item popularity (power law over a random order) and topic (equal-sized topics)."""
    rng = np.random.default_rng([seed, 0, 0])
    popularity = (rng.permutation(num_items) + 1.0) ** -POPULARITY_EXPONENT
    return popularity, rng.permutation(np.arange(num_items) % num_topics)


def _activity(rng: np.random.Generator, spec: SynthSpec) -> np.ndarray:
    """Interactions per user: heavy-tailed, summing to exactly ``num_interactions``."""
    n, num_users = spec.num_interactions, spec.num_users
    floor = max(1, min(5, n // num_users))
    cap = max(floor, min(spec.num_items // 2, n))
    weights = rng.lognormal(0.0, 1.0, num_users)
    counts = np.full(num_users, floor, dtype=np.int64)
    left = n - floor * num_users
    while left > 0:
        open_users = counts < cap
        if not open_users.any():
            raise ConfigError(
                f"cannot place {n} interactions: {num_users} users x at most {cap} items each; "
                f"raise num_users or num_items"
            )
        share = np.where(open_users, weights, 0.0)
        counts += rng.multinomial(left, share / share.sum())
        left = int(np.maximum(counts - cap, 0).sum())
        counts = np.minimum(counts, cap)
    return counts


def iter_blocks(
    num_interactions: int,
    num_users=None,
    num_items=None,
    seed: int = 0,
    num_topics=None,
    *,
    timestamp_resolution: int = 1,
) -> Iterator[pa.Table]:
    """The dataset as Arrow tables (``user_id``, ``item_id``, ``timestamp``, all int64)."""
    spec = SynthSpec.resolve(
        num_interactions, num_users, num_items, seed, num_topics, timestamp_resolution
    )
    return _Plan(spec).blocks()


def generate(
    num_interactions: int = 5_000,
    num_users: int | None = None,
    num_items: int | None = None,
    seed: int = 0,
    num_topics: int | None = None,
    *,
    timestamp_resolution: int = 1,
) -> pd.DataFrame:
    """A small synthetic dataset in memory.

    Returns
    -------
    DataFrame with ``num_interactions`` rows and int64 columns ``user_id`` (1..num_users),
    ``item_id`` (1..num_items) and ``timestamp`` (Unix seconds, increasing per user; multiples
    of ``timestamp_resolution``, non-decreasing per user, when it is above 1).
    """
    blocks = list(
        iter_blocks(
            num_interactions,
            num_users,
            num_items,
            seed,
            num_topics,
            timestamp_resolution=timestamp_resolution,
        )
    )
    return pa.concat_tables(blocks).to_pandas()


def write_synthetic(
    path: str | Path,
    num_interactions: int,
    num_users: int | None = None,
    num_items: int | None = None,
    seed: int = 0,
    fmt: str | None = None,
    num_topics: int | None = None,
    *,
    timestamp_resolution: int = 1,
) -> SynthSpec:
    """Stream a synthetic dataset to ``path`` block by block.

    ``fmt`` is ``"csv"`` (gzip-compressed when the name ends in ``.gz``) or ``"parquet"``;
    ``None`` (the default) means Parquet for ``.parquet``/``.pq`` names, else CSV. Returns the
    resolved sizes.
    """
    path = Path(path)
    fmt = fmt or ("parquet" if path.suffix in (".parquet", ".pq") else "csv")
    if fmt not in ("csv", "parquet"):
        raise ConfigError(f"format {fmt!r} is not supported; use csv or parquet")
    spec = SynthSpec.resolve(
        num_interactions, num_users, num_items, seed, num_topics, timestamp_resolution
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    blocks = _Plan(spec).blocks()
    if fmt == "parquet":
        import pyarrow.parquet as pq

        with pq.ParquetWriter(path, SCHEMA) as writer:
            for table in blocks:
                writer.write_table(table)
    else:
        import pyarrow.csv as pacsv

        options = pacsv.WriteOptions(include_header=False)
        compression = "gzip" if path.suffix == ".gz" else None
        with pa.output_stream(path, compression=compression) as stream:
            stream.write(b"user_id,item_id,timestamp\n")
            for table in blocks:
                pacsv.write_csv(table, stream, options)
    logger.info("wrote %s synthetic interactions to %s (%s)", f"{num_interactions:,}", path, spec)
    return spec


def item_metadata(num_items: int, seed: int = 0, num_topics: int | None = None) -> pd.DataFrame:
    """Item attributes matching the planted topics: ``item_id``, ``title``, ``genre``.

    ``genre`` is the item's topic, so filters and demos by genre follow the data's structure.
    Only ``num_items``, ``seed`` and ``num_topics`` matter (not the number of interactions).
    """
    spec = SynthSpec.resolve(max(num_items, 25), 1, num_items, seed, num_topics)
    _, topic = _items(spec.seed, num_items, spec.num_topics)
    if spec.num_topics <= len(GENRES):
        names = np.array(GENRES[: spec.num_topics])
    else:
        names = np.char.add("Genre ", (np.arange(spec.num_topics) + 1).astype(str))
    words = np.random.default_rng([seed, 2])
    adjectives = pd.Series(_ADJECTIVES).take(words.integers(len(_ADJECTIVES), size=num_items))
    nouns = pd.Series(_NOUNS).take(words.integers(len(_NOUNS), size=num_items))
    ids = np.arange(1, num_items + 1)
    titles = "The " + adjectives.to_numpy() + " " + nouns.to_numpy() + " (" + ids.astype(str) + ")"
    return pd.DataFrame({"item_id": ids, "title": titles, "genre": names[topic]})
