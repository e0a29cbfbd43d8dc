"""A micro-batch's top-k (a few rows on the CPU, ordered in NumPy) is evaluation's top-k: the
same items in the same order, ties to the lower item index, masked items last."""

from __future__ import annotations

import pytest
import torch

from mfrec.serve.scoring import FEW_ROWS, Masks, _few_rows_top_k, top_k_masked
from mfrec.train.ranking import top_k


@pytest.mark.parametrize("kind", ["distinct", "ties", "ties_and_masked"])
def test_the_few_rows_path_gives_top_ks_answer(kind):
    generator = torch.Generator().manual_seed(7)
    for _ in range(60):
        rows, items = int(torch.randint(1, 9, (1,))), int(torch.randint(1, 50, (1,)))
        if kind == "distinct":
            scores = torch.randn(rows, items, generator=generator)
        else:  # few distinct values: ties straddle the k-th place often
            scores = torch.randint(0, 4, (rows, items), generator=generator).float()
        if kind == "ties_and_masked":
            scores[:, ::3] = -torch.inf
        for k in (1, 3, items, items + 2):
            expected, got = top_k(scores.clone(), k), _few_rows_top_k(scores.clone(), k)
            assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_the_search_takes_the_few_rows_path_only_for_few_rows_on_the_cpu(monkeypatch):
    calls = []
    monkeypatch.setattr(
        "mfrec.serve.scoring._few_rows_top_k", lambda m, k: calls.append(len(m)) or top_k(m, k)
    )
    for rows in (1, FEW_ROWS, FEW_ROWS + 1):
        top_k_masked(torch.randn(rows, 30), 5, Masks())
    assert calls == [1, FEW_ROWS]
