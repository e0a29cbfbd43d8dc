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

    def windows(self, length: int, weights: np.ndarray | None = None, span: int = 1):
        """Training windows: each user's sequence cut, from its newest end, into pieces of
        ``length`` input positions; each piece as ``length + span`` items whose first
        ``length`` are the inputs and whose items ``t + 1 .. t + span`` are position ``t``'s
        targets (the next ``span`` items), left-padded, and right-padded past the user's newest.

        Every interaction but a user's first is the first target of exactly one window
        position; a user's first item has no history to predict it from. With ``span > 1`` an
        interaction is also a later target of the ``span - 1`` positions before that one (in
        the same window or, across a cut, in the next newer one).

        Parameters
        ----------
        length : int
        weights : ndarray of float32, shape (len(data),), optional
            Per-row training weights (event values, recency), in the data's row order.
        span : int
            Targets per position: 1 is next-item prediction.

        Returns
        -------
        items : ndarray of int64, shape (num_windows, length + span)
        target_weights : ndarray of float32, shape (num_windows, length, span)
            The weight of target ``j`` of position ``t`` (item ``t + 1 + j``); 0 where the input
            or the target is padding.
        """
        users, per_user = self._window_users(length)
        piece = np.arange(len(users)) - np.repeat(np.cumsum(per_user) - per_user, per_user)
        end = self.indptr[users + 1] - piece * length + span - 1
        start, stop = self.indptr[users], self.indptr[users + 1]
        where = _positions(start, stop, end, length + span, len(self.items))
        items = np.append(self.items, self.num_items)[where]
        row_weights = np.ones(len(self.items), np.float32)
        if weights is not None:
            row_weights = np.asarray(weights, np.float32)[self.rows]
        padded = np.append(row_weights, np.float32(0))[where]  # the pad's weight: 0
        # (W, length, span): target j of position t is entry t + 1 + j of the window.
        offsets = np.arange(length)[:, None] + 1 + np.arange(span)[None, :]
        target_weights = padded[:, offsets]
        target_weights[items[:, :length] == self.num_items] = 0.0  # no input: nothing to learn
        return items, target_weights

    def window_users(self, length: int) -> np.ndarray:
        """The user of each of :meth:`windows`' rows (same ``length``), shape (num_windows,)."""
        return self._window_users(length)[0]

    def _window_users(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        sizes = np.diff(self.indptr)
        per_user = np.where(sizes > 1, -(-(sizes - 1) // length), 0)
        return np.repeat(np.arange(self.num_users), per_user), per_user


def _positions(start, stop, end, length: int, missing: int) -> np.ndarray:
    """Entry index of ``end - length .. end - 1`` per row; ``missing`` outside
    ``[start, stop)`` (before the user's first entry or past their newest)."""
    index = end[:, None] - length + np.arange(length)[None, :]
    inside = (index >= start[:, None]) & (index < stop[:, None])
    return np.where(inside, index, missing)


def _gather(items, start, end, length, pad) -> np.ndarray:
    where = _positions(start, end, end, length, len(items))
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
