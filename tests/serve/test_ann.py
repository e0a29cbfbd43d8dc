"""Approximate search for large catalogues (mfrec.serve.ann): on catalogues where the index is
exhaustive its answers are exact search's answers, filters and exclusions included; requests
whose candidates run short are answered exactly; the settings and their errors."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
from known_answer import USER_IDS, known_answer, random_model

from mfrec.serve import ann
from mfrec.serve.ann import AnnSettings, ApproximateTopK
from mfrec.serve.recommender import Recommender
from mfrec.serve.requests import Filters, Request
from mfrec.serve.scoring import Masks, TopK
from mfrec.train.artifact import ModelArtifact
from mfrec.train.errors import ConfigError

needs_faiss = pytest.mark.skipif(
    not ann.installed(), reason="the ann extra is not installed: pip install 'mfrec[ann]'"
)
ON, OFF = AnnSettings("on"), AnnSettings("off")


def _random_model(num_users=12, num_items=2000) -> ModelArtifact:
    """Random float32 factors (no ties); 2,000 items make 31 IVF lists, all probed (at least
    MIN_PROBED are)."""
    return random_model(3, num_users, num_items)


def _pair(model: ModelArtifact) -> tuple[Recommender, Recommender]:
    approximate, exact = (Recommender(model, "cpu", ann=s) for s in (ON, OFF))
    index = approximate.tensors.by_score.index
    assert index.nprobe == index.nlist  # exhaustive: recall must be 1
    assert isinstance(exact.tensors.by_score, TopK)
    return approximate, exact


def _same(approximate: Recommender, exact: Recommender, requests: list[Request]) -> None:
    """Each request alone (a batch of EXACT_FROM_ROWS rows or more would be searched exactly)."""
    alone = [approximate.answer([request])[0] for request in requests]
    for request, got, want in zip(requests, alone, exact.answer(requests), strict=True):
        assert got.error is None and want.error is None, request
        assert got.item_ids.tolist() == want.item_ids.tolist(), request
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6, atol=2e-6)


@needs_faiss
def test_answers_equal_exact_answers_on_the_known_answer_model():
    approximate, exact = _pair(known_answer())
    requests = [
        Request("user", user_id, top_n=top_n, exclude_seen=seen)
        for user_id in USER_IDS
        for top_n in (1, 3, 8)
        for seen in (True, False)
    ]
    requests += [
        Request("history", history=("i2", "i5"), top_n=4),
        Request("user", "685", top_n=5, filters=Filters(exclude_items=("i1", "i2"))),
        Request("user", "u3", top_n=5, filters=Filters(include_items=("i0", "i7", "i4"))),
    ]
    _same(approximate, exact, requests)
    # User 1 ("685") ranks item 1 first (seen: left out), then 0 and 2 (tied, lower index first).
    assert approximate.answer([Request("user", "685", top_n=2)])[0].item_ids.tolist() == [
        "i0",
        "i2",
    ]


@needs_faiss
def test_filters_and_exclusions_stay_exact_on_a_random_model():
    approximate, exact = _pair(_random_model())
    users = [f"u{k}" for k in range(12)]
    best = exact.answer([Request("user", "u0", top_n=150)])[0].item_ids.tolist()
    far = tuple(f"i{k}" for k in range(0, 2000, 97))  # few allowed, mostly far from the top
    requests = [Request("user", u, top_n=25) for u in users]
    requests += [Request("user", u, top_n=10, exclude_seen=False) for u in users[:3]]
    requests += [
        Request("user", "u0", top_n=20, filters=Filters(exclude_items=tuple(best))),
        Request("user", "u1", top_n=5, filters=Filters(include_items=far)),
        Request("user", "u2", top_n=30, filters=Filters(include_items=far)),  # fewer than 30
        Request("history", history=("i3", "i40", "i500"), top_n=25),
        Request("history", user_id="u4", history=("i7",), top_n=25, exclude_seen=True),
    ]
    _same(approximate, exact, requests)


@needs_faiss
def test_rows_whose_candidates_run_short_are_searched_exactly():
    approximate, exact = _pair(_random_model())
    far = tuple(f"i{k}" for k in range(0, 2000, 97))
    requests = [Request("user", "u1", top_n=5, filters=Filters(include_items=far))]
    requests.append(Request("user", "u2", top_n=5))
    _same(approximate, exact, requests)
    assert approximate.tensors.by_score.exact_rows == 1  # the filtered row only


@needs_faiss
def test_a_batch_of_many_rows_is_searched_exactly():
    approximate, exact = _pair(_random_model())
    engine = approximate.tensors.by_score
    requests = [Request("user", f"u{k}", top_n=10) for k in range(ann.EXACT_FROM_ROWS)]
    got, want = approximate.answer(requests), exact.answer(requests)
    assert engine.exact_rows == ann.EXACT_FROM_ROWS
    assert [g.item_ids.tolist() for g in got] == [w.item_ids.tolist() for w in want]
    approximate.answer(requests[:-1])  # one row fewer: the index
    assert engine.exact_rows == ann.EXACT_FROM_ROWS


@needs_faiss
def test_a_partial_index_still_returns_exactly_scored_unmasked_items():
    """nprobe 1 of 8 lists: recall may fall below 1, but every item returned is allowed and
    carries its exact score, best first."""
    model = _random_model(num_items=4000)
    exact = Recommender(model, "cpu", ann=OFF)
    engine = ApproximateTopK.build(exact.tensors.by_score, nlist=8, nprobe=1)
    seen = set(model.seen_items(0).tolist())
    queries = exact.tensors.user_embeddings[:1]
    items, scores = engine.search(queries, 25, Masks.from_lists([model.seen_items(0)], [None]))
    keys, bias = exact.tensors.by_score.keys, exact.tensors.by_score.bias
    full = (queries @ keys.T + bias).double().numpy()[0]
    assert not seen & set(items[0].tolist())
    np.testing.assert_allclose(scores[0], full[items[0]], rtol=1e-6, atol=1e-6)
    assert (np.diff(scores[0]) <= 0).all()


def test_settings_from_the_environment(monkeypatch):
    monkeypatch.setattr(ann, "installed", lambda: True)
    assert AnnSettings.from_env({}) == AnnSettings("auto", 1_000_000)
    assert AnnSettings.from_env({"MFREC_ANN": "ON", "MFREC_ANN_MIN_ITEMS": "5"}) == AnnSettings(
        "on", 5
    )
    with pytest.raises(ConfigError, match="MFREC_ANN='fast'; use one of off, auto, on"):
        AnnSettings.from_env({"MFREC_ANN": "fast"})
    with pytest.raises(ConfigError, match="MFREC_ANN_MIN_ITEMS='1e6' must be a positive integer"):
        AnnSettings.from_env({"MFREC_ANN_MIN_ITEMS": "1e6"})


def test_on_without_the_extra_is_an_error_at_start(monkeypatch):
    monkeypatch.setattr(ann, "installed", lambda: False)
    with pytest.raises(ConfigError, match=r"MFREC_ANN=on needs faiss-cpu: pip install"):
        AnnSettings.from_env({"MFREC_ANN": "on"})


@pytest.mark.parametrize(
    ("settings", "installed", "line"),
    [
        (AnnSettings("auto", 9), True, "exact search: 8 items is under MFREC_ANN_MIN_ITEMS=9"),
        (
            AnnSettings("auto", 8),
            False,
            "exact search for 8 items: faiss-cpu is not installed (pip install 'mfrec[ann]')",
        ),
        (AnnSettings("off"), True, None),
    ],
)
def test_exact_search_is_kept_with_one_line_saying_why(
    monkeypatch, caplog, settings, installed, line
):
    monkeypatch.setattr(ann, "installed", lambda: installed)
    with caplog.at_level(logging.INFO, logger="mfrec.serve.ann"):
        rec = Recommender(known_answer(), "cpu", ann=settings)
        assert isinstance(rec.tensors.by_score, TopK)
    messages = [r.getMessage() for r in caplog.records if r.name == "mfrec.serve.ann"]
    assert messages == ([line] if line else [])


@needs_faiss
def test_a_server_worker_builds_the_index_on_a_thread_and_searches_exactly_until_then():
    model = _random_model()
    approximate, exact = Recommender(model, "cpu", ann=ON), Recommender(model, "cpu", ann=OFF)
    approximate.index_in_background = True  # as gunicorn's post_fork sets it
    tensors = approximate.tensors  # returns at once, the index still building or built
    assert isinstance(tensors.by_score, TopK | ApproximateTopK)
    for thread in threading.enumerate():
        if thread.name == "ann-index":
            thread.join(timeout=120)
    assert isinstance(approximate.tensors.by_score, ApproximateTopK)
    _same(approximate, exact, [Request("user", user_id=f"u{k}", top_n=10) for k in range(3)])
