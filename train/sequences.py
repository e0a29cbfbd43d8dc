"""Each user's interactions as a sequence in time order: the sequence model's view of the data.

A user's rows are ordered by (timestamp, position in the data), the order the temporal hold-out
uses (:func:`mfrec.train.split.temporal_split`), so a user's newest interaction is the last of
their sequence. Item indices are padded with :func:`pad_index` (= ``num_items``, one past the
last item) on the **left**: the newest item of a history always sits at the last position,
whatever the history's length, in training and in serving alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mfrec.train.interactions import Interactions


def pad_index(num_items: int) -> int:
    """The item index that marks an empty position: one past the catalogue."""
    return num_items


@dataclass(frozen=True)
class UserSequences:
    """Every user's items in time order, as CSR arrays.

    Attributes
    ----------
    indptr : ndarray of int64, shape (num_users + 1,)
    items : ndarray of int64, shape (n,)
        User ``u``'s items, oldest first, are ``items[indptr[u]:indptr[u + 1]]``.
    rows : ndarray of int64, shape (n,)
        The row of the data each entry came from (to carry per-row weights along).
    num_items : int
    """

    indptr: np.ndarray
    items: np.ndarray
    rows: np.ndarray
    num_items: int

    @classmethod
    def from_interactions(cls, data: Interactions) -> UserSequences:
        """Sort ``data``'s rows by user, then timestamp, then position (stable)."""
        position = np.arange(len(data), dtype=np.int64)
        time = position if data.timestamps is None else data.timestamps
        rows = np.lexsort((position, time, data.user_idx))
        counts = np.bincount(data.user_idx, minlength=data.num_users)
        indptr = np.zeros(data.num_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        items = np.asarray(data.item_idx, dtype=np.int64)[rows]
        return cls(indptr, items, rows.astype(np.int64), data.num_items)

    @property
    def num_users(self) -> int:
        return len(self.indptr) - 1

    def last(self, length: int) -> np.ndarray:
        """Each user's newest ``length`` items, left-padded, (num_users, length) int64."""
        return _gather(self.items, self.indptr[:-1], self.indptr[1:], length, self.num_items)

    def recent_csr(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        """Each user's newest ``length`` items (oldest first) as CSR ``(indptr, items)``: the
        histories a model artifact keeps for serving."""
        counts = np.minimum(np.diff(self.indptr), length)
        indptr = np.zeros(self.num_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        start = np.repeat(self.indptr[1:] - counts, counts)
        offset = np.arange(indptr[-1]) - np.repeat(indptr[:-1], counts)
        return indptr, self.items[start + offset]

    def windows(self, length: int, weights: np.ndarray | None = None):
        """Training windows: each user's sequence cut, from its newest end, into pieces of
        ``length`` targets; each piece as ``length + 1`` items whose first ``length`` are the
        inputs and last ``length`` the targets (next items), left-padded.

        Every interaction but a user's first is the target of exactly one window position; a
        user's first item has no history to predict it from and its position weighs 0.

        Parameters
        ----------
        length : int
        weights : ndarray of float32, shape (len(data),), optional
            Per-row training weights (event values, recency), in the data's row order.

        Returns
        -------
        items : ndarray of int64, shape (num_windows, length + 1)
        target_weights : ndarray of float32, shape (num_windows, length)
            The weight of each target (0 where its input or itself is padding).
        """
        sizes = np.diff(self.indptr)
        per_user = np.where(sizes > 1, -(-(sizes - 1) // length), 0)
        users = np.repeat(np.arange(self.num_users), per_user)
        piece = np.arange(len(users)) - np.repeat(np.cumsum(per_user) - per_user, per_user)
        end = self.indptr[users + 1] - piece * length
        items = _gather(self.items, self.indptr[users], end, length + 1, self.num_items)
        row_weights = np.ones(len(self.items), np.float32)
        if weights is not None:
            row_weights = np.asarray(weights, np.float32)[self.rows]
        padded = np.append(row_weights, np.float32(0))  # the pad's weight
        where = _positions(self.indptr[users], end, length + 1, len(self.items))
        target_weights = padded[where][:, 1:]
        target_weights[items[:, :-1] == self.num_items] = 0.0  # no input: nothing to learn
        return items, target_weights


def _positions(start: np.ndarray, end: np.ndarray, length: int, missing: int) -> np.ndarray:
    """Entry index of ``end - length .. end - 1`` per row, ``missing`` before ``start``."""
    index = end[:, None] - length + np.arange(length)[None, :]
    return np.where(index >= start[:, None], index, missing)


def _gather(items, start, end, length, pad) -> np.ndarray:
    where = _positions(start, end, length, len(items))
    return np.append(items, pad)[where]


def left_pad(histories, length: int, num_items: int) -> np.ndarray:
    """The newest ``length`` items of each history (arrays of item indices, oldest first),
    left-padded, (len(histories), length) int64."""
    out = np.full((len(histories), length), pad_index(num_items), dtype=np.int64)
    for row, history in enumerate(histories):
        recent = np.asarray(history, dtype=np.int64)[-length:]
        if len(recent):
            out[row, length - len(recent) :] = recent
    return out
