"""Splits that keep the index spaces: the seed protocol's per-user temporal hold-out, and the
re-indexing of a separately loaded validation set onto the training data's id maps."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from mfrec.train.interactions import Interactions, sorted_unique

logger = logging.getLogger(__name__)


def user_rank(data: Interactions, purpose: str = "the order") -> np.ndarray:
    """Each row's rank within its user by (timestamp, position), as a fraction in (0, 1].

    pandas ``rank(pct=True, method="first")``: a user's rows get ``1/n, 2/n, ..., 1``, equal
    timestamps ranked by position (file order). Without timestamps positions alone decide,
    and a log line names ``purpose``.

    Returns
    -------
    ndarray of float64, shape (len(data),)
    """
    if data.timestamps is None:
        logger.info("no timestamps: %s follows each user's file order", purpose)
        order = np.arange(len(data), dtype=np.int64)
    else:
        order = data.timestamps
    frame = pd.DataFrame({"user": data.user_idx, "order": order})
    return frame.groupby("user", sort=False)["order"].rank(pct=True, method="first").to_numpy()


def temporal_split(data: Interactions, fraction: float = 0.1) -> tuple[Interactions, Interactions]:
    """Hold out the last ``fraction`` of each user's interactions (the seed protocol).

    Each user's interactions are ordered by (timestamp, position in ``data``); a row is held
    out when its rank within the user, as pandas ``rank(pct=True, method="first")`` computes
    it, is greater than ``1 - fraction``. A user with ``n`` interactions thus keeps the first
    ``floor(n * (1 - fraction))`` (up to floating-point rounding); the last row always has rank
    1.0, so every user with any ``fraction > 0`` has at least one row held out. Without
    timestamps, positions alone order the rows, and a log line says so.

    Returns
    -------
    train, test : Interactions
        Disjoint row subsets of ``data`` with its user and item index spaces.
    """
    held_out = user_rank(data, "the hold-out") > 1.0 - fraction
    return data.subset(~held_out), data.subset(held_out)


def sample_users(data: Interactions, seed: int, max_users: int) -> Interactions:
    """``data`` restricted to at most ``max_users`` of its users (seeded), or ``data`` itself
    when it has no more than that."""
    users = sorted_unique(data.user_idx)
    if len(users) <= max_users:
        return data
    chosen = np.random.default_rng(seed).choice(users, max_users, replace=False)
    return data.subset(np.isin(data.user_idx, chosen))


def align_to(other: Interactions, reference: Interactions) -> tuple[Interactions, dict]:
    """Re-index ``other`` onto ``reference``'s user and item id maps.

    Rows whose user or item id does not occur in ``reference`` cannot be scored by a model
    trained on it and are dropped.

    Returns
    -------
    aligned : Interactions
        ``other``'s remaining rows with ``reference``'s ``user_ids``/``item_ids``.
    dropped : dict
        ``{"unknown_user_rows": int, "unknown_item_rows": int, "kept_rows": int}``; a row with
        both an unknown user and an unknown item counts as an unknown user.
    """
    user_map = pd.Index(reference.user_ids).get_indexer(other.user_ids)
    item_map = pd.Index(reference.item_ids).get_indexer(other.item_ids)
    user_idx = user_map[other.user_idx]
    item_idx = item_map[other.item_idx]
    unknown_user = user_idx < 0
    unknown_item = (item_idx < 0) & ~unknown_user
    keep = ~(unknown_user | unknown_item)
    kept = other.subset(keep)
    aligned = Interactions(
        user_idx=user_idx[keep].astype(np.int64),
        item_idx=item_idx[keep].astype(np.int64),
        user_ids=reference.user_ids,
        item_ids=reference.item_ids,
        timestamps=kept.timestamps,
        weights=kept.weights,
        event_types=kept.event_types,
        meta=dict(other.meta),
    )
    dropped = {
        "unknown_user_rows": int(unknown_user.sum()),
        "unknown_item_rows": int(unknown_item.sum()),
        "kept_rows": int(keep.sum()),
    }
    return aligned, dropped
