"""Exploration (mfrec.serve.exploration, issue 15 item 5) on the known-answer model: user 302
ranks items 0, 1, 2, ... and has seen item 0; item i has 8 - i training interactions, so the
rarely seen items (at most the median, 4.5) are i4..i7."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from known_answer import known_answer

from mfrec.serve.exploration import Exploration, item_ages_days
from mfrec.serve.recommender import Recommender
from mfrec.serve.requests import Filters, RecordError, Request, request_from_fields
from mfrec.train.errors import ConfigError

COLD = {"i4", "i5", "i6", "i7"}


def recommender(artifact=None) -> Recommender:
    return Recommender(artifact or known_answer(), "cpu", batch_wait_seconds=0)


def ask(rec, weight, seed=0, cutoff=None, **fields):
    fields.setdefault("top_n", 4)
    request = Request(user_id="302", exploration=Exploration(weight, cutoff, seed), **fields)
    return rec.answer([request])[0]


def test_without_exploration_answers_are_unchanged():
    rec = recommender()
    plain = rec.answer([Request(user_id="302", top_n=4)])[0]
    assert plain.item_ids.tolist() == ["i1", "i2", "i3", "i4"]
    for weight in (None, 0.0):
        assert ask(rec, weight).item_ids.tolist() == plain.item_ids.tolist()
    assert Exploration.from_env({}) == Exploration(0.0, 30.0)


def test_half_the_slots_go_to_cold_items_around_the_best_items_kept_in_order():
    rec = recommender()
    for seed in range(20):
        answer = ask(rec, 0.5, seed)
        items = answer.item_ids.tolist()
        explored = [item for item in items if item not in ("i1", "i2")]
        assert len(items) == 4 and [i for i in items if i in ("i1", "i2")] == ["i1", "i2"]
        assert len(explored) == 2 and set(explored) <= COLD
        positions = [items.index(item) for item in explored]
        assert answer.note == f"explored (new or rarely seen) items at positions {positions}"
        # Explored items carry their own model scores: 2ui - i^2 - i/16 with u = 0.
        for item, score in zip(items, answer.scores, strict=True):
            k = int(item[1:])
            assert score == pytest.approx(-(k**2) - k / 16, abs=1e-6)


def test_the_same_seed_gives_the_same_answer_and_seeds_differ():
    rec = recommender()
    answers = {tuple(ask(rec, 0.5, seed).item_ids.tolist()) for seed in range(30)}
    assert len(answers) > 1
    for seed in (0, 1, 12345):
        first, again = ask(rec, 0.5, seed), ask(rec, 0.5, seed)
        assert first.item_ids.tolist() == again.item_ids.tolist()
        assert first.scores.tolist() == again.scores.tolist()


def test_weight_one_fills_every_slot_with_cold_items_within_the_filters():
    rec = recommender()
    assert set(ask(rec, 1.0).item_ids.tolist()) == COLD
    filtered = ask(rec, 1.0, filters=Filters(exclude_items=("i4", "i5")))
    assert set(filtered.item_ids.tolist()) == {"i6", "i7"}  # fewer candidates: fewer items
    allowed = ask(rec, 1.0, filters=Filters(include_items=("i1", "i6")))
    assert allowed.item_ids.tolist() == ["i6"]


def test_a_user_s_seen_items_are_not_explored_when_they_are_excluded():
    artifact = dataclasses.replace(known_answer(), seen_indices=np.array([6, 1, 2, 3]))
    rec = recommender(artifact)
    for seed in range(10):
        assert "i6" not in ask(rec, 1.0, seed).item_ids.tolist()
    found = {i for s in range(10) for i in ask(rec, 1.0, s, exclude_seen=False).item_ids}
    assert "i6" in found


def test_the_age_cut_off_keeps_only_young_items_by_creation_time():
    days = np.arange(8) * 86_400  # item k created on day k; the newest item is age 0
    extra = {"item_attribute.CREATION_TIMESTAMP": np.array([str(t) for t in days])}
    artifact = dataclasses.replace(known_answer(), extra=extra)
    assert item_ages_days(artifact).tolist() == [7, 6, 5, 4, 3, 2, 1, 0]
    rec = recommender(artifact)
    assert set(ask(rec, 1.0, cutoff=1.5).item_ids.tolist()) == {"i6", "i7"}
    assert set(ask(rec, 1.0, cutoff=3).item_ids.tolist()) == {"i4", "i5", "i6", "i7"}


def test_item_ages_from_first_interactions_and_unknown_ages():
    # Items 0..3 seen by users 0..3 on days 3, 1, 2, 5 (seen_indices = user u saw item u).
    extra = {"seen_timestamps": np.array([3, 1, 2, 5]) * 86_400}
    ages = item_ages_days(dataclasses.replace(known_answer(), extra=extra))
    assert ages[:4].tolist() == [2, 4, 3, 0] and np.isinf(ages[4:]).all()
    assert item_ages_days(known_answer()) is None  # no times: age does not narrow the pool


def test_history_requests_explore_too_and_batches_equal_single_answers():
    rec = recommender()
    history = Request("history", "new", history=("i2",), top_n=4, exploration=Exploration(1.0))
    assert set(rec.answer([history])[0].item_ids.tolist()) <= COLD
    requests = [
        Request(user_id=u, top_n=3, exploration=Exploration(0.7, None, seed))
        for seed, u in enumerate(["302", "685", "u3", "302"])
    ]
    together = rec.answer_together(requests)
    for request, answer in zip(requests, together, strict=True):
        alone = rec.answer_together([request])[0]
        assert answer.item_ids.tolist() == alone.item_ids.tolist()


def test_request_fields_in_both_shapes():
    mfrec = request_from_fields(
        {"user_id": "302", "exploration_weight": "0.5", "exploration_seed": 3}
    )
    assert mfrec.exploration == Exploration(0.5, None, 3) and not mfrec.personalize
    shaped = request_from_fields(
        {"userId": "302", "explorationWeight": 0.3, "explorationItemAgeCutOff": "7"}
    )
    assert shaped.personalize and shaped.exploration == Exploration(0.3, 7.0, None)
    assert request_from_fields({"user_id": "302"}).exploration is None


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"exploration_weight": 1.5}, r"exploration_weight=1.5 is out of range; use 0"),
        ({"explorationWeight": "lots"}, r"explorationWeight must be a number, got 'lots'"),
        ({"exploration_item_age_cutoff": 0}, r"exploration_item_age_cutoff=0 is out of range"),
        ({"exploration_seed": -1}, r"exploration_seed must be an integer from 0 to 2\*\*63 - 1"),
    ],
)
def test_bad_request_values_are_one_line_record_errors(fields, message):
    with pytest.raises(RecordError, match=message):
        request_from_fields({"user_id": "302", **fields})
    with pytest.raises(RecordError, match=message):
        request_from_fields({"userId": "302", **fields})


def test_deployment_options_from_the_environment(monkeypatch):
    env = {"MFREC_EXPLORATION_WEIGHT": "1", "MFREC_EXPLORATION_ITEM_AGE_CUTOFF": "14"}
    assert Exploration.from_env(env) == Exploration(1.0, 14.0)
    with pytest.raises(ConfigError, match="MFREC_EXPLORATION_WEIGHT=2 is out of range"):
        Exploration.from_env({"MFREC_EXPLORATION_WEIGHT": "2"})
    with pytest.raises(ConfigError, match="MFREC_EXPLORATION_ITEM_AGE_CUTOFF must be a number"):
        Exploration.from_env({"MFREC_EXPLORATION_ITEM_AGE_CUTOFF": "soon"})
    monkeypatch.setenv("MFREC_EXPLORATION_WEIGHT", "1")
    rec = recommender()
    assert set(rec.answer([Request(user_id="302", top_n=4)])[0].item_ids.tolist()) == COLD
    off = Request(user_id="302", top_n=4, exploration=Exploration(0.0))  # a request's override
    assert rec.answer([off])[0].item_ids.tolist() == ["i1", "i2", "i3", "i4"]
