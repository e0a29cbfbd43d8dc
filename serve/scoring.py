"""The vectorised parts of serving: top-k of ``queries @ keys.T`` with masks, fold-in of fresh
histories, and item co-occurrence.

Top-k requests end in :meth:`TopK.search`: one matrix product and one top-k per chunk of rows
(a chunk holds at most ``SCORES_PER_CHUNK`` scores). The top-k is evaluation's
(:func:`mfrec.train.ranking.top_k`: tied scores rank the lower item index first), so a served
list is the list the metrics measured. Big chunks are computed into one scratch buffer per
process: allocating 100+ MB per chunk costs more in page faults than the product itself.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from mfrec.train.ranking import csr_rows, top_k

SCORES_PER_CHUNK = 1 << 25  # 128 MiB of float32 scores
FEW_ROWS = 64  # csr_pairs slices this many rows in NumPy


@dataclass
class Masks:
    """Items removed from each query row: ``(row, item)`` pairs sorted by row, and for some
    rows the only items allowed."""

    rows: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    items: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    allowed: dict[int, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_lists(cls, banned: Sequence[np.ndarray], allowed: Sequence[np.ndarray | None]):
        """From one array of banned item indices and one allowed array (or None) per row."""
        lengths = np.fromiter((len(b) for b in banned), dtype=np.int64, count=len(banned))
        rows = np.repeat(np.arange(len(banned)), lengths)
        items = np.concatenate(list(banned)) if len(banned) else np.empty(0)
        allowed_rows = {row: a for row, a in enumerate(allowed) if a is not None}
        return cls(rows, items.astype(np.int64), allowed_rows)

    def plus(self, rows: np.ndarray, items: np.ndarray) -> Masks:
        """These masks and more banned pairs."""
        rows, items = np.concatenate([self.rows, rows]), np.concatenate([self.items, items])
        order = np.argsort(rows, kind="stable")
        return Masks(rows[order], items[order], self.allowed)

    def chunk(self, start: int, stop: int) -> Masks:
        """The masks of rows ``start:stop``, renumbered from 0."""
        lo, hi = np.searchsorted(self.rows, [start, stop])
        allowed = {r - start: a for r, a in self.allowed.items() if start <= r < stop}
        return Masks(self.rows[lo:hi] - start, self.items[lo:hi], allowed)


def csr_pairs(
    indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~mfrec.train.ranking.csr_rows` on NumPy arrays: (position in ``rows``, item)
    pairs of the CSR rows ``rows``, computed on the CPU without copying the CSR arrays.

    Up to :data:`FEW_ROWS` rows (real-time requests) are sliced in NumPy instead: the same
    pairs, without the fixed cost of seven torch operations.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) <= FEW_ROWS:
        starts, stops = indptr[rows], indptr[rows + 1]
        positions = np.repeat(np.arange(len(rows), dtype=np.int64), stops - starts)
        pieces = [indices[a:b] for a, b in zip(starts.tolist(), stops.tolist(), strict=True)]
        items = np.concatenate(pieces) if pieces else np.empty(0)
        return positions, items.astype(np.int64, copy=False)
    positions, items = csr_rows(_long(indptr), _long(indices), _long(rows))
    return positions.numpy(), items.numpy()


def _long(array: np.ndarray) -> torch.Tensor:
    array = np.asarray(array, dtype=np.int64)
    return torch.from_numpy(array if array.flags.writeable else array.copy())


class TopK:
    """The best ``k`` keys for each query row by ``queries @ keys.T + bias``.

    Parameters
    ----------
    keys : Tensor, shape (num_items, dim)
    bias : Tensor, shape (num_items,), or None
    """

    def __init__(self, keys: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        self.keys = keys
        self.keys_t = keys.T
        self.bias = bias if bias is not None else torch.zeros(len(keys), device=keys.device)
        self.num_items = len(keys)
        self.rows_per_chunk = max(1, SCORES_PER_CHUNK // max(1, self.num_items))
        self._scratch: torch.Tensor | None = None
        self._lock = threading.Lock()

    def search(
        self, queries: torch.Tensor, k: int, masks: Masks, offsets: torch.Tensor | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k per row: item indices (n, k) and scores (n, k), ``-inf`` where masked.

        ``offsets`` (n,) is added to a row's scores after the top-k (a user bias: it shifts a
        whole row and cannot change its ranking).
        """
        k = min(k, self.num_items)
        item_idx = np.empty((len(queries), k), dtype=np.int64)
        scores = np.empty((len(queries), k), dtype=np.float64)
        for start in range(0, len(queries), self.rows_per_chunk):
            stop = min(start + self.rows_per_chunk, len(queries))
            big = (stop - start) * self.num_items > SCORES_PER_CHUNK // 8
            with self._lock if big else contextlib.nullcontext():  # real time never waits
                out = self._buffer(stop - start) if big else None
                matrix = torch.addmm(self.bias, queries[start:stop], self.keys_t, out=out)
                values, winners = top_k_masked(matrix, k, masks.chunk(start, stop))
            if offsets is not None:
                values += offsets[start:stop].unsqueeze(1)
            item_idx[start:stop], scores[start:stop] = winners.cpu().numpy(), values.cpu().numpy()
        return item_idx, scores

    def _buffer(self, num_rows: int) -> torch.Tensor:
        if self._scratch is None:
            shape = (self.rows_per_chunk, self.num_items)
            self._scratch = torch.empty(shape, device=self.keys_t.device)
        return self._scratch[:num_rows]


def top_k_masked(matrix: torch.Tensor, k: int, masks: Masks):
    """:func:`~mfrec.train.ranking.top_k` of ``matrix`` (changed in place) after applying
    ``masks``: (values, item indices), ties to the lower index, as evaluation ranks them."""
    if len(masks.rows):
        rows = torch.from_numpy(masks.rows).to(matrix.device)
        matrix[rows, torch.from_numpy(masks.items).to(matrix.device)] = -torch.inf
    for row, allowed in masks.allowed.items():
        keep = torch.full_like(matrix[row], -torch.inf)
        index = torch.from_numpy(allowed).to(matrix.device)
        keep[index] = matrix[row, index]
        matrix[row] = keep
    return top_k(matrix, k)


def fold_in(
    item_embeddings: torch.Tensor,
    gram: torch.Tensor,
    histories: Sequence[np.ndarray],
    priors: torch.Tensor,
    confidence: float,
    regularization: float,
) -> torch.Tensor:
    """User vectors for fresh histories, solved against the fixed item embeddings.

    The implicit-ALS fold-in (Hu, Koren & Volinsky 2008): every item is a weak "no" (weight 1,
    target 0), each history item a confident "yes" (weight ``confidence``, target 1), and the
    vector is pulled towards its prior (a known user's trained vector, else 0)::

        u = (V'V + (c - 1) sum_h v_h v_h' + r I)^-1 (c sum_h v_h + r u0)

    Parameters
    ----------
    item_embeddings : Tensor, shape (num_items, dim)
    gram : Tensor, shape (dim, dim), ``V'V``
    histories : n arrays of item indices
    priors : Tensor, shape (n, dim)
    confidence, regularization : float

    Returns
    -------
    Tensor, shape (n, dim)
    """
    n, dim = priors.shape
    device = item_embeddings.device
    lengths = torch.tensor([len(h) for h in histories], device=device)
    rows = torch.repeat_interleave(torch.arange(n, device=device), lengths)
    items = torch.from_numpy(np.concatenate(histories).astype(np.int64)).to(device)
    vectors = item_embeddings[items]  # (sum of lengths, dim)
    eye = torch.eye(dim, device=device)
    lhs = (gram + regularization * eye).expand(n, dim, dim).clone()
    lhs.index_add_(0, rows, (confidence - 1) * vectors[:, :, None] * vectors[:, None, :])
    rhs = regularization * priors.clone()
    rhs.index_add_(0, rows, confidence * vectors)
    return torch.linalg.solve(lhs, rhs)


def mean_embedding(
    item_embeddings: torch.Tensor, histories: Sequence[np.ndarray], norm: float
) -> torch.Tensor:
    """The mean item vector of each history, rescaled to length ``norm`` (so that item biases
    weigh as much as for a trained user); shape (n, dim)."""
    n, device = len(histories), item_embeddings.device
    lengths = torch.tensor([len(h) for h in histories], device=device)
    rows = torch.repeat_interleave(torch.arange(n, device=device), lengths)
    items = torch.from_numpy(np.concatenate(histories).astype(np.int64)).to(device)
    sums = torch.zeros(n, item_embeddings.shape[1], device=device)
    sums.index_add_(0, rows, item_embeddings[items])
    return sums / sums.norm(dim=1, keepdim=True).clamp_min(1e-12) * norm


class CoOccurrence:
    """How often two items were interacted with by the same user in training (the SIMS idea),
    as cosine similarity of their binary user columns: ``both / sqrt(count_i * count_j)``.

    Built from the artifact's seen-items CSR on first use (an item → users transpose).
    """

    def __init__(self, seen_indptr: np.ndarray, seen_indices: np.ndarray, num_items: int):
        users = np.repeat(np.arange(len(seen_indptr) - 1), np.diff(seen_indptr))
        order = np.argsort(seen_indices, kind="stable")
        self.item_users = users[order]
        self.item_indptr = np.concatenate(
            [[0], np.cumsum(np.bincount(seen_indices, minlength=num_items))]
        )
        self.seen_indptr, self.seen_indices = seen_indptr, seen_indices
        self.counts = np.maximum(np.diff(self.item_indptr), 1).astype(np.float64)
        self.num_items = num_items

    def similarities(self, item_idx: int) -> np.ndarray:
        """Cosine co-occurrence of ``item_idx`` with every item, shape (num_items,)."""
        users = self.item_users[self.item_indptr[item_idx] : self.item_indptr[item_idx + 1]]
        _, items = csr_pairs(self.seen_indptr, self.seen_indices, users)
        both = np.bincount(items, minlength=self.num_items).astype(np.float64)
        return both / np.sqrt(self.counts[item_idx] * self.counts)
