"""Ranking primitives shared by evaluation (:mod:`mfrec.train.metrics`) and serving
(:mod:`mfrec.serve.scoring`), so that a served list and a measured list are the same list.

- :func:`top_k`: the ``k`` best items per row, ties broken by the lower item index;
- :func:`csr_rows`: the (row, item) pairs of some CSR rows (a user's training items, which
  both sides leave out of the ranking).
"""

from __future__ import annotations

import numpy as np
import torch

# Up to this many rows on the CPU (a server's micro-batch), top_k orders its k winners in NumPy:
# the same answer, in fewer torch operations. A micro-batch's leader takes the GIL back after
# every torch operation, and in a busy worker each time waits for a thread that parses or
# formats a request; the seven small operations that order 25 winners cost more in those waits
# than in computing (benchmarks/NOTES.md, "Session 7: serving at 8 clients").
FEW_ROWS = 64


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best items per row, by descending score then ascending item index.

    ``torch.topk`` alone orders tied scores arbitrarily (and differently on the CPU and on a
    GPU); here ties always rank the lower index first, as a stable sort of the whole row would.
    Only rows where a tie straddles the k-th place (rare for learnt scores, common for counts)
    get that full sort: elsewhere the k winners are known and only they are sorted. Items scored
    ``-inf`` (masked) come last in no particular order: callers drop them.

    Parameters
    ----------
    scores : Tensor (B, num_items)
    k : int

    Returns
    -------
    values : Tensor (B, min(k, num_items))
        The scores of the chosen items, best first.
    index : LongTensor (B, min(k, num_items))
        Their item indices.
    """
    num_items = scores.shape[1]
    k = min(k, num_items)
    # One more than asked: the (k+1)-th best tying the k-th means a tie straddles the k-th place.
    values, index = torch.topk(scores, min(k + 1, num_items), dim=1)
    if scores.device.type == "cpu" and len(scores) <= FEW_ROWS and not scores.requires_grad:
        values, index = values.numpy(), index.numpy()  # see FEW_ROWS
    straddle = None
    if 0 < k < num_items:
        straddle = (values[:, k - 1] == values[:, k]) & (values[:, k - 1] > -torch.inf)
    values, index = _by_score_then_index(values[:, :k], index[:, :k])
    if straddle is not None and straddle.any():  # topk may have kept the wrong tied items
        rows = torch.as_tensor(straddle).nonzero().squeeze(1)
        full = torch.sort(scores[rows], dim=1, descending=True, stable=True)
        values[rows], index[rows] = full.values[:, :k], full.indices[:, :k]
    return values, index


def _by_score_then_index(values, index) -> tuple[torch.Tensor, torch.Tensor]:
    """The k winners of each row (tensors, or NumPy arrays: see :data:`FEW_ROWS`) ordered by
    index, then stably by descending score; returned as tensors."""
    if isinstance(values, np.ndarray):
        by_index = np.argsort(index, axis=1)  # item indices are distinct
        values = np.take_along_axis(values, by_index, 1)
        index = np.take_along_axis(index, by_index, 1)
        by_score = np.argsort(-values, axis=1, kind="stable")
        values = np.take_along_axis(values, by_score, 1)
        index = np.take_along_axis(index, by_score, 1)
        return torch.from_numpy(values), torch.from_numpy(index)
    index, position = index.sort(dim=1)
    values, position = values.gather(1, position).sort(dim=1, descending=True, stable=True)
    return values, index.gather(1, position)


def csr_rows(
    indptr: torch.Tensor, indices: torch.Tensor, rows: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (position in ``rows``, column) pairs of the CSR rows ``rows``, without a Python loop.

    Parameters
    ----------
    indptr : LongTensor (num_rows + 1,)
    indices : LongTensor (nnz,)
        Columns of row ``r`` are ``indices[indptr[r]:indptr[r + 1]]``.
    rows : LongTensor (n,)
        The rows wanted, in any order, repeats allowed.

    Returns
    -------
    positions : LongTensor (m,)
        For each pair, its row's position in ``rows`` (ascending).
    columns : LongTensor (m,)
        The columns, in CSR order within each row.
    """
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    positions = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), lengths)
    offsets = torch.arange(int(lengths.sum()), device=rows.device) - torch.repeat_interleave(
        torch.cumsum(lengths, 0) - lengths, lengths
    )
    return positions, indices[torch.repeat_interleave(starts, lengths) + offsets]
