"""Item-side model extras written at training time and read by the server.

``item_trending`` (float64, shape (num_items,))
    Recency-weighted popularity for ``{"type": "trending"}`` requests (:func:`trending_scores`).
``item_attribute.<name>`` (str, shape (num_items,))
    One string per item from an item metadata file (Amazon Personalize's Items dataset): several
    values separated by ``|`` (``Comedy|Drama``), ``""`` for items the file does not describe
    (:func:`read_item_attributes`). The server filters on them (``include_attributes``) and
    shows ``title`` on its page.

Both are aligned to the training data's item index: entry ``i`` belongs to ``item_ids[i]``.

``seen_timestamps`` (int64, shape (nnz,)), when the data has timestamps
    When each user last interacted with each training item, parallel to the artifact's
    ``seen_indices`` (:func:`seen_timestamps`): the web page's dated history.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from mfrec.train.artifact import ATTRIBUTE_PREFIX, TRENDING
from mfrec.train.errors import ConfigError
from mfrec.train.interactions import Interactions

logger = logging.getLogger(__name__)

HALF_LIFE_NAME = "trending_half_life_days"
DEFAULT_HALF_LIFE_DAYS = 7.0
SECONDS_PER_DAY = 86_400
SEEN_TIMESTAMPS = "seen_timestamps"


def parse_half_life(text: str) -> float:
    """``trending_half_life_days`` from its hyperparameter string: a number > 0, in days.

    Raises
    ------
    ConfigError
        Not a finite number greater than 0.
    """
    try:
        value = float(str(text).strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(
            f"{HALF_LIFE_NAME} must be a number of days greater than 0 (e.g. 7 or 0.5), got "
            f"{text!r:.40}"
        )
    return value


def trending_scores(
    interactions: Interactions, half_life_days: float = DEFAULT_HALF_LIFE_DAYS
) -> np.ndarray:
    """Recency-weighted interaction count of every item.

    ``score[i] = sum over the interactions r of item i of 0.5 ** (age_r / half_life_days)``,
    where ``age_r`` is the time in days from interaction ``r`` to the newest timestamp in the
    data (not to the clock: a model trained on old data still has trending items). An
    interaction at the newest time counts 1, one ``half_life_days`` older counts 0.5. Each
    interaction counts once whatever its event value, as in the ``popular`` counts. Without
    timestamps the scores are the plain counts, and a log line says so.

    Returns
    -------
    ndarray of float64, shape (num_items,)
    """
    if interactions.timestamps is None or len(interactions) == 0:
        logger.info("no timestamps: trending items are the plain interaction counts")
        return interactions.item_counts().astype(np.float64)
    timestamps = np.asarray(interactions.timestamps, dtype=np.int64)
    age_days = (timestamps.max() - timestamps) / SECONDS_PER_DAY
    weights = np.exp2(-age_days / half_life_days)
    return np.bincount(interactions.item_idx, weights=weights, minlength=interactions.num_items)


def seen_timestamps(interactions: Interactions) -> np.ndarray | None:
    """The newest timestamp of every distinct (user, item) pair, in the order of
    :meth:`Interactions.to_csr`'s ``indices``; ``None`` without timestamps.

    Returns
    -------
    ndarray of int64, shape (nnz,), or None
    """
    if interactions.timestamps is None:
        return None
    key = interactions.user_idx.astype(np.int64) * interactions.num_items + interactions.item_idx
    pairs, pair_of_row = np.unique(key, return_inverse=True)
    newest = np.full(len(pairs), np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(newest, pair_of_row, np.asarray(interactions.timestamps, dtype=np.int64))
    return newest


def item_extras(
    interactions: Interactions,
    items: str | Path | None = None,
    half_life_days: float = DEFAULT_HALF_LIFE_DAYS,
) -> dict[str, np.ndarray]:
    """The artifact extras of this module: ``item_trending``, ``seen_timestamps`` (with
    timestamps), and ``item_attribute.<name>``
    for every attribute column of the metadata file or folder ``items`` (when given)."""
    extras = {TRENDING: trending_scores(interactions, half_life_days)}
    times = seen_timestamps(interactions)
    if times is not None:
        extras[SEEN_TIMESTAMPS] = times
    if items is not None:
        # Here, not at the top: the server imports this module for its names, and the reader
        # would bring the whole import package (pandas, pyarrow: 0.44 s) into its start-up.
        from mfrec.train.ingest.items import read_item_attributes

        attributes = read_item_attributes(items, interactions.item_ids)
        extras.update({ATTRIBUTE_PREFIX + name: v for name, v in attributes.items()})
    return extras
