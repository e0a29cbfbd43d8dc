"""The ranking primitives evaluation and serving share (mfrec.train.ranking), against slow,
obviously-correct loops: top-k with ties across the k-th place, and CSR row expansion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mfrec.serve import scoring
from mfrec.serve.scoring import Masks, TopK, csr_pairs
from mfrec.train import ranking
from mfrec.train.ranking import csr_rows, top_k


def slow_top_k(row: list[float], k: int) -> list[int]:
    """The definition: finite scores only, descending, ties to the lower index."""
    finite = [i for i, score in enumerate(row) if score > -np.inf]
    return sorted(finite, key=lambda i: (-row[i], i))[:k]


def tied_scores(seed: int, num_rows: int = 40, num_items: int = 70, levels: int = 3):
    """Few distinct scores (ties everywhere, across every k-th place), some masked (-inf)."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, size=(num_rows, num_items)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    scores[0, 3:] = -np.inf  # a row with fewer finite items than k
    return torch.from_numpy(scores)


def straddles(scores: torch.Tensor, k: int) -> bool:
    """Whether some row has a tie across the k-th place (so the test can catch a wrong pick)."""
    ordered = scores.sort(dim=1, descending=True).values
    return bool(((ordered[:, k - 1] == ordered[:, k]) & (ordered[:, k] > -np.inf)).any())


# Where top_k orders its k winners: in NumPy (up to FEW_ROWS rows on the CPU), or in torch.
ORDERS = pytest.mark.parametrize("few_rows", [ranking.FEW_ROWS, 0], ids=["numpy", "torch"])


@ORDERS
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [1, 5, 25, 69, 70, 100])
def test_top_k_matches_a_stable_sort_loop(seed, k, few_rows, monkeypatch):
    monkeypatch.setattr(ranking, "FEW_ROWS", few_rows)
    scores = tied_scores(seed, levels=[2, 3, 5, 40][seed])
    if k <= 25:  # about 56 finite items per row
        assert straddles(scores, k)
    values, index = top_k(scores, k)
    assert index.shape == values.shape == (len(scores), min(k, scores.shape[1]))
    for row, value_row, index_row in zip(scores.tolist(), values, index, strict=True):
        want = slow_top_k(row, k)
        assert index_row[: len(want)].tolist() == want
        assert value_row[: len(want)].tolist() == [row[i] for i in want]
        assert (value_row[len(want) :] == -np.inf).all()  # masked items: last, dropped by callers


@ORDERS
def test_top_k_breaks_ties_by_lower_index(few_rows, monkeypatch):
    monkeypatch.setattr(ranking, "FEW_ROWS", few_rows)
    scores = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0, 5.0, 5.0]])
    assert top_k(scores, 2)[1].tolist() == [[1, 2], [0, 1]]
    assert top_k(scores, 4)[1].tolist() == [[1, 2, 4, 5], [0, 1, 2, 3]]
    assert top_k(scores, 4)[0].tolist() == [[3.0, 3.0, 3.0, 2.0], [5.0] * 4]
    assert top_k(scores, 10)[1].shape == (2, 6)
    assert top_k(scores, 0)[1].shape == (2, 0)


@pytest.mark.parametrize("kind", ["distinct", "ties", "ties_and_masked"])
def test_ordering_in_numpy_gives_the_same_answer_as_in_torch(kind, monkeypatch):
    generator, few = torch.Generator().manual_seed(7), ranking.FEW_ROWS
    for _ in range(60):
        rows, items = int(torch.randint(1, 9, (1,))), int(torch.randint(1, 50, (1,)))
        if kind == "distinct":
            scores = torch.randn(rows, items, generator=generator)
        else:  # few distinct values: ties straddle the k-th place often
            scores = torch.randint(0, 4, (rows, items), generator=generator).float()
        if kind == "ties_and_masked":
            scores[:, ::3] = -torch.inf
        for k in (1, 3, items, items + 2):
            monkeypatch.setattr(ranking, "FEW_ROWS", 0)
            expected = top_k(scores.clone(), k)
            monkeypatch.setattr(ranking, "FEW_ROWS", few)
            got = top_k(scores.clone(), k)
            assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_only_a_few_rows_on_the_cpu_are_ordered_in_numpy(monkeypatch):
    calls = []
    order = ranking._by_score_then_index
    monkeypatch.setattr(
        ranking,
        "_by_score_then_index",
        lambda v, i: calls.append((len(v), isinstance(v, np.ndarray))) or order(v, i),
    )
    few = ranking.FEW_ROWS
    for rows in (1, few, few + 1):
        scoring.top_k_masked(torch.randn(rows, 30), 5, Masks())
    top_k(torch.randn(2, 30, requires_grad=True), 5)  # .numpy() would refuse it: torch
    assert calls == [(1, True), (few, True), (few + 1, False), (2, False)]


@pytest.mark.parametrize("rows_per_chunk", [1, 7, 1000])
def test_serving_search_ranks_ties_as_the_loop(rows_per_chunk, monkeypatch):
    """The serving path (TopK.search: matrix product, masks, chunks) on tied scores."""
    rng = np.random.default_rng(5)
    num_items = 70
    keys = torch.from_numpy(rng.integers(0, 3, size=(num_items, 1)).astype(np.float32))
    queries = torch.from_numpy(rng.integers(1, 3, size=(30, 1)).astype(np.float32))
    banned = [rng.choice(num_items, rng.integers(0, 20), replace=False) for _ in queries]
    masks = Masks.from_lists(banned, [None] * len(queries))
    monkeypatch.setattr(scoring, "SCORES_PER_CHUNK", rows_per_chunk * num_items)
    item_idx, scores = TopK(keys).search(queries, 10, masks)
    table = (queries @ keys.T).numpy()
    for row, (items, values) in enumerate(zip(item_idx, scores, strict=True)):
        row_scores = [-np.inf if i in banned[row] else float(s) for i, s in enumerate(table[row])]
        assert items.tolist() == slow_top_k(row_scores, 10)
        assert values.tolist() == [row_scores[i] for i in items]


def slow_csr_rows(indptr, indices, rows):
    pairs = [
        (p, int(indices[j])) for p, r in enumerate(rows) for j in range(indptr[r], indptr[r + 1])
    ]
    return [p for p, _ in pairs], [c for _, c in pairs]


def test_csr_rows_matches_a_loop():
    rng = np.random.default_rng(3)
    lengths = rng.integers(0, 5, size=12)  # empty rows included
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = rng.integers(0, 50, size=int(indptr[-1]))
    for rows in ([], [4], [11, 0, 0, 5], list(range(12))[::-1]):
        positions, columns = csr_rows(
            torch.from_numpy(indptr),
            torch.from_numpy(indices),
            torch.tensor(rows, dtype=torch.long),
        )
        assert (positions.tolist(), columns.tolist()) == slow_csr_rows(indptr, indices, rows)


def test_csr_pairs_on_numpy_arrays_read_only_included():
    indptr, indices = np.array([0, 2, 2, 3]), np.array([4, 5, 6], dtype=np.int32)
    indptr.flags.writeable = indices.flags.writeable = False  # as a memory-mapped artifact
    positions, items = csr_pairs(indptr, indices, np.array([2, 1, 0]))
    assert (positions.tolist(), items.tolist()) == ([0, 2, 2], [6, 4, 5])
    assert positions.dtype == items.dtype == np.int64
