"""Micro-batching: concurrent calls answered by one call, each caller getting its own answers
in order, identical to the answers of one call at a time."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from known_answer import NUM_ITEMS, USER_IDS, known_answer, random_model

from mfrec.serve import scoring
from mfrec.serve.batching import MicroBatcher
from mfrec.serve.recommender import Recommender
from mfrec.serve.requests import Request


class GatedAnswer:
    """An ``answer`` function that records the batches it gets; the first call blocks until
    :attr:`release` is set, so that other calls queue behind it."""

    def __init__(self) -> None:
        self.batches: list[list] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, requests: list) -> list:
        self.batches.append(list(requests))
        if len(self.batches) == 1:
            self.entered.set()
            assert self.release.wait(10)
        if "boom" in requests:
            raise RuntimeError("boom")
        return [f"answer to {r}" for r in requests]


def _queue_behind_a_leader(batcher: MicroBatcher, answer: GatedAnswer, calls: list[list]):
    """Start a leader with ["first"], queue ``calls`` (in order) behind it, release; return
    each call's result (or the exception it raised), the leader's first."""
    pool = ThreadPoolExecutor(len(calls) + 1)
    futures = [pool.submit(batcher, ["first"])]
    assert answer.entered.wait(10)
    for call in calls:
        futures.append(pool.submit(batcher, call))
        while len(batcher._pending) < len(futures) - 1:  # queued in this order
            threading.Event().wait(0.001)
    answer.release.set()
    results = [f.exception(10) or f.result(10) for f in futures]
    pool.shutdown()
    return results


def test_calls_that_queue_behind_a_batch_become_one_batch_answered_in_order():
    answer = GatedAnswer()
    batcher = MicroBatcher(answer, wait_seconds=0)
    calls = [["a1", "a2"], ["b1"], ["c1", "c2", "c3"]]
    results = _queue_behind_a_leader(batcher, answer, calls)
    assert answer.batches == [["first"], ["a1", "a2", "b1", "c1", "c2", "c3"]]
    assert results == [[f"answer to {r}" for r in call] for call in [["first"], *calls]]
    assert (batcher.batches, batcher.batched_requests) == (2, 7)


def test_a_batch_holds_at_most_max_requests():
    answer = GatedAnswer()
    batcher = MicroBatcher(answer, max_requests=4, wait_seconds=0)
    calls = [["a1", "a2"], ["b1", "b2"], ["c1"]]
    results = _queue_behind_a_leader(batcher, answer, calls)
    assert answer.batches == [["first"], ["a1", "a2", "b1", "b2"], ["c1"]]
    assert results[1:] == [[f"answer to {r}" for r in call] for call in calls]


def test_a_failing_call_fails_alone():
    answer = GatedAnswer()
    batcher = MicroBatcher(answer, wait_seconds=0)
    results = _queue_behind_a_leader(batcher, answer, [["a"], ["boom"], ["b"]])
    assert answer.batches[1:] == [["a", "boom", "b"], ["a"], ["boom"], ["b"]]
    assert results[1] == ["answer to a"] and results[3] == ["answer to b"]
    assert isinstance(results[2], RuntimeError)


def test_large_bodies_and_empty_calls_do_not_wait_for_a_batch():
    answer = GatedAnswer()
    batcher = MicroBatcher(answer, max_requests=3, wait_seconds=0)
    with ThreadPoolExecutor(1) as pool:
        leader = pool.submit(batcher, ["first"])
        assert answer.entered.wait(10)
        assert batcher(["x", "y", "z"]) == ["answer to x", "answer to y", "answer to z"]
        assert batcher([]) == []
        answer.release.set()
        assert leader.result(10) == ["answer to first"]


def _mixed_requests(user_ids, item_ids) -> list[Request]:
    """Every request type, an unknown user, a refused top_n, a Personalize-shaped one."""
    return [
        *(Request("user", u, top_n=3) for u in user_ids),
        Request("user", user_ids[0], top_n=5, exclude_seen=False),
        Request("user", "nobody", top_n=2),
        Request("user", user_ids[1], top_n=0),
        Request("history", "new", history=(item_ids[1], item_ids[2]), top_n=3),
        Request("similar_items", item_id=item_ids[3], top_n=3),
        Request("rank", user_ids[2], item_ids=(item_ids[4], "not-an-item", item_ids[0])),
        Request("user", user_ids[3], top_n=3, personalize=True),
        Request("popular", top_n=4),
    ]


def _flat(answers) -> list:
    """Comparable answers (an unknown item's NaN score as None)."""
    return [
        (list(a.item_ids), [None if np.isnan(x) else x for x in a.scores], a.note, a.error)
        for a in answers
    ]


def _concurrently(rec: Recommender, requests: list[Request], rounds: int = 5) -> list:
    """Each request sent alone from its own thread, all threads started together."""
    start = threading.Barrier(len(requests))

    def one(request):
        start.wait(10)
        return rec.answer([request])[0]

    with ThreadPoolExecutor(len(requests)) as pool:
        return [_flat(pool.map(one, requests)) for _ in range(rounds)]


def test_micro_batched_answers_equal_one_at_a_time_answers_exactly():
    rec = Recommender(known_answer(), "cpu", batch_wait_seconds=0.005)
    item_ids = [f"i{k}" for k in range(NUM_ITEMS)]
    requests = _mixed_requests(USER_IDS, item_ids)
    alone = _flat(rec.answer_together([r])[0] for r in requests)
    for together in _concurrently(rec, requests):
        assert together == alone
    assert rec._batcher.batched_requests > rec._batcher.batches  # some calls were batched


def test_micro_batched_answers_match_on_a_random_model():
    """Random float32 scores: the same items; scores equal up to float32 and 6-decimal
    rounding (BLAS may round a dot product differently for 1-3 rows than for more)."""
    num_users = 20
    model = random_model(7, num_users, num_items=300)
    rec = Recommender(model, "cpu", batch_wait_seconds=0.005)
    requests = _mixed_requests([f"u{k}" for k in range(num_users)], [f"i{k}" for k in range(9)])
    alone = _flat(rec.answer_together([r])[0] for r in requests)
    for together in _concurrently(rec, requests, rounds=3):
        for got, want in zip(together, alone, strict=True):
            assert got[0] == want[0] and got[2:] == want[2:]
            got_scores, want_scores = (np.array(x, dtype=float) for x in (got[1], want[1]))
            np.testing.assert_allclose(got_scores, want_scores, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("wait_ms", [0, 2])
def test_a_lone_caller_is_answered_at_once_in_one_batch(wait_ms):
    rec = Recommender(known_answer(), "cpu", batch_wait_seconds=wait_ms / 1000)
    for user_id in USER_IDS:
        rec.answer([Request("user", user_id, top_n=2)])
    assert (rec._batcher.batches, rec._batcher.batched_requests) == (len(USER_IDS),) * 2


def test_a_small_batch_takes_the_same_training_items_out_as_a_large_one():
    # csr_pairs slices up to FEW_ROWS rows in NumPy and runs larger batches through torch.
    rng = np.random.default_rng(3)
    indptr = np.concatenate([[0], np.cumsum(rng.integers(0, 5, 50))])
    indices = rng.integers(0, 100, indptr[-1])
    for rows in ([], [3], [0, 0, 49, 7, 3], rng.integers(0, 50, scoring.FEW_ROWS)):
        rows = np.asarray(rows, dtype=np.int64)
        big = np.concatenate([rows, rng.integers(0, 50, scoring.FEW_ROWS)])  # the torch path
        positions, items = scoring.csr_pairs(indptr, indices, rows)
        want_positions, want_items = scoring.csr_pairs(indptr, indices, big)
        kept = want_positions < len(rows)
        np.testing.assert_array_equal(positions, want_positions[kept])
        np.testing.assert_array_equal(items, want_items[kept])
        assert positions.dtype == items.dtype == np.int64
