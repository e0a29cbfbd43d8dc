"""Metrics: the batched implementation against a slow, obviously-correct loop, ties included."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mfrec.train.interactions import Interactions
from mfrec.train.metric_lines import METRIC_NAMES
from mfrec.train.metrics import evaluate, evaluate_popularity, popularity_scores


def interactions(pairs, num_users, num_items) -> Interactions:
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return Interactions(
        user_idx=pairs[:, 0],
        item_idx=pairs[:, 1],
        user_ids=np.asarray([f"u{u}" for u in range(num_users)]),
        item_ids=np.asarray([f"i{i}" for i in range(num_items)]),
    )


def slow_metrics(scores, train, test, k=25, exclude_seen=True):
    """The definitions, one user at a time, in plain Python."""
    num_users, num_items = scores.shape
    seen = {u: set() for u in range(num_users)}
    for u, i in zip(train.user_idx, train.item_idx, strict=True):
        seen[u].add(int(i))
    relevant = {u: set() for u in range(num_users)}
    for u, i in zip(test.user_idx, test.item_idx, strict=True):
        if not (exclude_seen and int(i) in seen[u]):
            relevant[u].add(int(i))
    totals = {name: 0.0 for name in METRIC_NAMES if name != "coverage"}
    covered, evaluated = set(), 0
    for u in range(num_users):
        if not relevant[u]:
            continue
        evaluated += 1
        candidates = [i for i in range(num_items) if not (exclude_seen and i in seen[u])]
        ranked = sorted(candidates, key=lambda i: (-scores[u, i], i))[:k]
        covered.update(ranked)
        hits = [1 if i in relevant[u] else 0 for i in ranked]
        n = len(relevant[u])
        for c in (5, 10, 25):
            totals[f"precision@{c}"] += sum(hits[:c]) / c
            dcg = sum(h / math.log2(p + 2) for p, h in enumerate(hits[:c]))
            ideal = sum(1 / math.log2(p + 2) for p in range(min(c, n)))
            totals[f"ndcg@{c}"] += dcg / ideal
        totals["recall@10"] += sum(hits[:10]) / min(10, n)
        first = next((p for p, h in enumerate(hits) if h), None)
        totals["mrr@25"] += 0.0 if first is None else 1.0 / (first + 1)
    result = {name: value / evaluated for name, value in totals.items()}
    result["coverage"] = len(covered) / num_items
    result["num_users"] = evaluated
    return result


def random_case(seed, num_users=30, num_items=60, tie_levels=3):
    rng = np.random.default_rng(seed)
    # Few distinct score values: ties everywhere, including across the 25th place.
    scores = rng.integers(0, tie_levels, size=(num_users, num_items)).astype(np.float32)
    train = interactions(
        [(u, i) for u in range(num_users) for i in rng.choice(num_items, 10, replace=False)],
        num_users,
        num_items,
    )
    test_pairs = [
        (u, i) for u in range(num_users - 3) for i in rng.choice(num_items, rng.integers(1, 15))
    ]  # the last 3 users have no test rows; duplicates and seen items occur
    return scores, train, interactions(test_pairs, num_users, num_items)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("exclude_seen", [True, False])
def test_batched_equals_slow_loop_with_ties(seed, exclude_seen):
    scores, train, test = random_case(seed, tie_levels=[2, 3, 50][seed % 3])
    if seed % 3 < 2:  # 2 or 3 score values: ties straddle the 25th place
        ordered = -np.sort(-scores, axis=1)
        assert (ordered[:, 24] == ordered[:, 25]).mean() > 0.5
    table = torch.from_numpy(scores)
    fast = evaluate(
        lambda users: table[users], train, test, exclude_seen=exclude_seen, chunk_elements=7 * 60
    )
    slow = slow_metrics(scores, train, test, exclude_seen=exclude_seen)
    assert fast["num_users"] == slow["num_users"]
    for name in METRIC_NAMES:
        assert fast[name] == pytest.approx(slow[name], abs=1e-12), name


def test_known_answer_by_hand():
    # One user, 6 items; item 5 is seen in training, items 1 and 3 are the test items.
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7, 0.0, 1.0]])
    train = interactions([(0, 5)], 1, 6)
    test = interactions([(0, 1), (0, 3)], 1, 6)
    result = evaluate(lambda users: scores[users], train, test, k=5)
    # Ranking without item 5: 1 (hit), 3 (hit), 2, 0, 4.
    assert result["precision@5"] == pytest.approx(2 / 5)
    assert "precision@10" not in result and "mrr@25" not in result  # cutoffs above k omitted
    assert result["ndcg@5"] == pytest.approx(1.0)
    assert result["coverage"] == pytest.approx(5 / 6)
    result = evaluate(lambda users: scores[users], train, interactions([(0, 2)], 1, 6))
    # Item 2 is third: MRR 1/3, NDCG = (1/log2 4) / 1 = 0.5, precision@10 = 1/10.
    assert result["mrr@25"] == pytest.approx(1 / 3)
    assert result["ndcg@10"] == pytest.approx(0.5)
    assert result["precision@10"] == pytest.approx(0.1)
    assert result["recall@10"] == pytest.approx(1.0)


def test_users_without_relevant_items_are_not_evaluated():
    scores = torch.zeros(3, 4)
    train = interactions([(0, 0), (1, 1)], 3, 4)
    test = interactions([(0, 0), (1, 2)], 3, 4)  # user 0's only test item was seen
    result = evaluate(lambda users: scores[users], train, test)
    assert result["num_users"] == 1
    empty = evaluate(lambda users: scores[users], train, interactions([], 3, 4))
    assert empty["num_users"] == 0 and empty["ndcg@10"] == 0.0


def test_popularity_baseline_ranks_by_training_counts():
    train = interactions([(0, 2), (1, 2), (2, 2), (0, 1), (1, 1), (2, 0)], 4, 5)
    assert popularity_scores(train).tolist() == [1.0, 2.0, 3.0, 0.0, 0.0]
    test = interactions([(3, 2), (3, 4)], 4, 5)
    result = evaluate_popularity(train, test)
    # User 3 saw nothing: ranking 2 (hit), 1, 0, 3, 4 (hit, tie with 3 broken by index).
    expected_dcg = 1 + 1 / math.log2(6)
    assert result["ndcg@5"] == pytest.approx(expected_dcg / (1 + 1 / math.log2(3)))
    assert result["mrr@25"] == 1.0


def test_device_csr_is_built_once_per_object_and_dropped_with_it(monkeypatch):
    import gc

    from mfrec.train import metrics

    scores, train, test = random_case(0)
    table = torch.from_numpy(scores)
    built = []
    original = Interactions.to_csr

    def counting(self):
        built.append(id(self))
        return original(self)

    monkeypatch.setattr(Interactions, "to_csr", counting)
    first = evaluate(lambda users: table[users], train, test)
    again = evaluate(lambda users: table[users], train, test)  # as validation every epoch
    assert first == again
    assert len(built) == 2  # test and train once each
    key = (id(test), "cpu")
    assert key in metrics._CSR_CACHE
    del test
    gc.collect()
    assert key not in metrics._CSR_CACHE


def test_chunks_are_sized_from_free_gpu_memory(monkeypatch):
    from mfrec.train import metrics

    assert metrics.chunk_elements_for("cpu") == metrics.CPU_CHUNK_BYTES // metrics.BYTES_PER_SCORE
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (8 * 2**30, 80 * 2**30))
    expected = int(8 * 2**30 * metrics.GPU_FREE_SHARE) // metrics.BYTES_PER_SCORE
    assert metrics.chunk_elements_for("cuda:0") == expected


@pytest.mark.parametrize("chunk_elements", [None, 60, 13 * 60])
def test_chunk_size_never_changes_the_metrics(chunk_elements):
    scores, train, test = random_case(4, tie_levels=3)
    table = torch.from_numpy(scores)
    fast = evaluate(lambda users: table[users], train, test, chunk_elements=chunk_elements)
    slow = slow_metrics(scores, train, test)
    for name in METRIC_NAMES:
        assert fast[name] == pytest.approx(slow[name], abs=1e-12), name
