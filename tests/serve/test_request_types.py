"""Request types beyond user-to-items (issue 7) on known-answer models: similar items (cosine,
co-occurrence), ranking, fold-in of fresh histories, popular and trending lists, filters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mfrec.serve.handlers import HANDLERS
from mfrec.serve.recommender import Recommender
from mfrec.serve.requests import (
    REQUEST_TYPES,
    Filters,
    RecordError,
    Request,
    infer_type,
    request_from_fields,
)
from mfrec.serve.scoring import CoOccurrence, Masks, csr_pairs, fold_in, mean_embedding
from mfrec.train.artifact import ModelArtifact

# Items on a circle: cluster A at 0, 5, 10, 15 degrees, cluster B at 90, 85, 80, 75 degrees, so
# the cosine of two items is the cosine of their angle difference.
ANGLES = np.radians([0, 5, 10, 15, 90, 85, 80, 75])
SEEN = [[0, 1], [0, 1, 2], [2, 3], [5]]  # co-occurrence: 0~1 twice, 0~2 and 1~2 once, 2~3 once
GENRES = ["Comedy", "Comedy|Drama", "Drama", "Horror", "Comedy", "Drama", "Horror", ""]


def circle(extra: dict | None = None) -> ModelArtifact:
    items = np.stack([np.cos(ANGLES), np.sin(ANGLES)], axis=1).astype(np.float32)
    users = np.array([[1, 0], [0, 1], [1, 1], [-1, 0]], dtype=np.float32)
    return ModelArtifact(
        users,
        items,
        np.zeros(4, np.float32),
        np.zeros(8, np.float32),
        np.array(["a", "b", "c", "d"]),
        np.array([f"i{k}" for k in range(8)]),
        np.array([5, 8, 3, 9, 1, 2, 7, 4], np.float32),  # popularity order: 3 1 6 0 7 2 5 4
        np.cumsum([0] + [len(s) for s in SEEN]),
        np.array(sum(SEEN, []), dtype=np.int64),
        extra=extra or {},
    )


def ids(answer) -> list[str]:
    return list(answer.item_ids)


@pytest.fixture
def rec() -> Recommender:
    extra = {"item_attribute.genre": np.array(GENRES), "item_trending": np.arange(8.0)}
    return Recommender(circle(extra), "cpu")


def ask(rec: Recommender, **fields):
    (answer,) = rec.answer([request_from_fields(fields)])
    return answer


def test_similar_items_by_cosine_of_the_item_embeddings(rec):
    answer = ask(rec, item_id="i0", top_n=7)
    assert ids(answer) == ["i1", "i2", "i3", "i7", "i6", "i5", "i4"]
    np.testing.assert_allclose(answer.scores, np.cos(ANGLES[[1, 2, 3, 7, 6, 5, 4]]), atol=1e-6)
    assert ids(ask(rec, item_id="i4", top_n=2)) == ["i5", "i6"]


def test_similar_items_can_leave_out_what_a_user_has_seen(rec):
    assert ids(ask(rec, item_id="i0", user_id="b", exclude_seen=True, top_n=2)) == ["i3", "i7"]
    assert ids(ask(rec, item_id="i0", user_id="b", top_n=2)) == ["i1", "i2"]  # off by default


def test_similar_items_by_training_co_occurrence(rec):
    answer = ask(rec, item_id="i0", similarity="cooccurrence")
    assert (ids(answer), answer.scores.tolist()) == (["i1", "i2"], [1.0, 0.5])
    assert ids(ask(rec, item_id="i3", similarity="cooccurrence")) == ["i2"]
    assert ids(ask(rec, item_id="i4", similarity="cooccurrence")) == []  # never seen: no list


def test_co_occurrence_matches_a_slow_count():
    artifact = circle()
    counts = np.zeros((8, 8))
    for items in SEEN:
        for i in items:
            for j in items:
                counts[i, j] += 1
    cooccurrence = CoOccurrence(artifact.seen_indptr, artifact.seen_indices, 8)
    popularity = np.maximum(np.diag(counts), 1)
    for item in range(8):
        want = counts[item] / np.sqrt(popularity[item] * popularity)
        np.testing.assert_allclose(cooccurrence.similarities(item), want)


def test_unknown_item_gets_popular_items_or_an_error(rec):
    answer = ask(rec, item_id="nope", top_n=3)
    assert ids(answer) == ["i3", "i1", "i6"]
    assert answer.note == "item 'nope' is not in the model: most popular items"
    strict = Recommender(circle(), "cpu", unknown_user="error")
    assert ask(strict, item_id="nope").error == "item 'nope' is not in the model"


def test_rank_orders_the_given_items_and_puts_unknown_ones_last(rec):
    answer = ask(rec, user_id="a", item_ids=["i5", "i0", "zzz", "i2", "i0"])
    assert ids(answer) == ["i0", "i2", "i5", "zzz"]
    np.testing.assert_allclose(answer.scores[:3], np.cos(ANGLES[[0, 2, 5]]), atol=1e-6)
    assert np.isnan(answer.scores[3])
    assert answer.note == "items not in the model, placed last: ['zzz']"
    assert ids(ask(rec, user_id="a", item_ids=["i5", "i0", "i2"], top_n=1)) == ["i0"]


def test_rank_for_an_unknown_user_is_by_popularity_and_filters_apply(rec):
    answer = ask(rec, user_id="new", item_ids=["i0", "i1", "i2", "i3"])
    assert ids(answer) == ["i3", "i1", "i0", "i2"]
    assert answer.note == "user not in the model: ranked by popularity"
    filtered = ask(rec, user_id="a", item_ids=["i0", "i1", "i2"], exclude_items=["i0"])
    assert ids(filtered) == ["i1", "i2"]
    assert ids(ask(rec, user_id="a", item_ids=["i0", "i1"], exclude_seen=True)) == []


@pytest.mark.parametrize("method", ["als", "mean"])
def test_fold_in_of_a_fresh_history_recommends_its_cluster(method):
    rec = Recommender(circle(), "cpu", fold_in_method=method)
    answer = ask(rec, user_id="new-42", history=["i0", "i1"], top_n=2)
    assert ids(answer) == ["i2", "i3"]  # cluster A, the history itself left out
    other = ask(rec, history=["i4", "i5"], top_n=2)
    assert ids(other) == ["i6", "i7"]


def test_fold_in_for_a_known_user_extends_the_history(rec):
    # User "a" saw i0 and i1 in training: both stay out, like the new history items.
    answer = ask(rec, user_id="a", history=["i4"], top_n=8)
    assert not {"i0", "i1", "i4"} & set(ids(answer)) and len(answer.item_ids) == 5
    unknown_only = ask(rec, user_id="a", history=["nope"], top_n=2)
    assert ids(unknown_only) == ids(ask(rec, user_id="a", top_n=2)) == ["i2", "i3"]
    assert unknown_only.note == "history items not in the model were ignored: ['nope']"
    nothing = ask(rec, user_id="new", history=["nope"], top_n=1)
    assert nothing.note == "no item of the history is in the model: most popular items"


def test_fold_in_solves_the_implicit_als_normal_equations():
    rng = np.random.default_rng(3)
    items = torch.from_numpy(rng.normal(size=(20, 4)).astype(np.float32))
    histories = [np.array([1, 5, 7]), np.array([2]), np.array([0, 3, 3])]
    priors = torch.from_numpy(rng.normal(size=(3, 4)).astype(np.float32))
    gram = items.T @ items
    got = fold_in(items, gram, histories, priors, confidence=5.0, regularization=0.5)
    for row, history in enumerate(histories):
        v = items.numpy().astype(np.float64)
        lhs = v.T @ v + 0.5 * np.eye(4) + 4.0 * sum(np.outer(v[h], v[h]) for h in history)
        rhs = 5.0 * v[history].sum(axis=0) + 0.5 * priors[row].numpy()
        np.testing.assert_allclose(got[row].numpy(), np.linalg.solve(lhs, rhs), rtol=1e-4)
    means = mean_embedding(items, histories, norm=2.0)
    np.testing.assert_allclose(means.norm(dim=1).numpy(), [2.0, 2.0, 2.0], rtol=1e-5)


def test_popular_and_trending_lists(rec):
    assert ids(ask(rec, top_n=3)) == ["i3", "i1", "i6"]
    assert ask(rec, top_n=3).scores.tolist() == [9.0, 8.0, 7.0]
    assert ids(ask(rec, type="trending", top_n=3)) == ["i7", "i6", "i5"]
    popular = {"type": "popular", "exclude_seen": True}
    assert ids(ask(rec, top_n=3, user_id="d", **popular)) == ["i3", "i1", "i6"]
    assert ids(ask(rec, top_n=2, user_id="c", **popular)) == ["i1", "i6"]
    plain = Recommender(circle(), "cpu")
    assert ask(plain, type="trending").error.startswith("this model has no trending counts")


def test_filters_on_items_and_attributes_for_every_type(rec):
    assert ids(ask(rec, top_n=3, exclude_items=["i3", "nope"])) == ["i1", "i6", "i0"]
    assert ids(ask(rec, top_n=5, include_items=["i4", "i0"])) == ["i0", "i4"]  # fewer than 5
    comedy = {"genre": "Comedy"}
    assert ids(ask(rec, top_n=8, include_attributes=comedy)) == ["i1", "i0", "i4"]
    assert ids(ask(rec, user_id="d", top_n=8, include_attributes=comedy)) == ["i4", "i1", "i0"]
    assert ids(
        ask(rec, item_id="i0", top_n=3, exclude_attributes={"genre": ["Drama", "Comedy"]})
    ) == ["i3", "i7", "i6"]
    both = ask(
        rec,
        history=["i0"],
        top_n=8,
        include_attributes={"genre": "Drama"},
        include_items=["i1", "i2", "i3"],
    )
    assert ids(both) == ["i1", "i2"]
    error = ask(rec, top_n=2, include_attributes={"colour": "red"}).error
    assert error.startswith("the model has no item attribute 'colour' (it has: genre)")


def test_type_is_inferred_from_the_fields():
    cases = [
        ({"user_id": "a"}, "user"),
        ({"user_id": "a", "history": ["1"]}, "history"),
        ({"history": []}, "history"),
        ({"item_id": "1"}, "similar_items"),
        ({"item_id": "1", "user_id": "a"}, "similar_items"),
        ({"user_id": "a", "item_ids": ["1"]}, "rank"),
        ({"top_n": 3}, "popular"),
        ({}, "popular"),
    ]
    for fields, want in cases:
        assert infer_type(fields) == want
    explicit = request_from_fields({"type": "trending", "userId": "a"})
    assert (explicit.type, explicit.user_id) == ("trending", "a")


def test_request_fields_with_lists_and_filters():
    request = request_from_fields(
        {
            "itemId": 50,
            "numResults": "3",
            "similarity": "cooccurrence",
            "exclude_items": ["1", 2],
            "include_attributes": {"genre": ["Comedy", "Drama"]},
        }
    )
    assert request == Request(
        "similar_items",
        item_id="50",
        top_n=3,
        similarity="cooccurrence",
        filters=Filters(
            exclude_items=("1", "2"), include_attributes=(("genre", ("Comedy", "Drama")),)
        ),
    )
    assert request.subject == "50" and not Filters()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"item_ids": "1,2"}, 'item_ids must be a list of ids like ["50", "181"]'),
        ({"history": [1.5]}, "each of history must be a non-empty string or an integer"),
        ({"type": "sims"}, "type must be one of user, history, similar_items, rank, popular"),
        ({"item_id": "1", "similarity": "jaccard"}, "similarity must be one of embedding"),
        ({"include_attributes": ["Comedy"]}, "include_attributes must be an object like"),
        ({"exclude_attributes": {"genre": 5}}, "values of 'genre' must be strings"),
    ],
)
def test_bad_request_fields(fields, message):
    with pytest.raises(RecordError, match=message.replace("(", r"\(").replace("[", r"\[")):
        request_from_fields(fields)


def test_masks_and_csr_pairs():
    masks = Masks.from_lists(
        [np.array([1, 2]), np.empty(0, np.int64), np.array([0])], [None, np.array([3]), None]
    )
    chunk = masks.chunk(1, 3)
    assert (chunk.rows.tolist(), chunk.items.tolist(), list(chunk.allowed)) == ([1], [0], [0])
    more = masks.plus(np.array([0]), np.array([7]))
    assert more.rows.tolist() == [0, 0, 0, 2] and more.items.tolist() == [1, 2, 7, 0]
    positions, items = csr_pairs(np.array([0, 2, 2, 3]), np.array([4, 5, 6]), np.array([2, 0]))
    assert (positions.tolist(), items.tolist()) == ([0, 1, 1], [6, 4, 5])


def test_every_request_type_has_a_handler(rec):
    assert list(HANDLERS) == list(REQUEST_TYPES)
    assert rec.request_types == REQUEST_TYPES
    for request_type in REQUEST_TYPES:
        (answer,) = rec.answer([Request(type=request_type, user_id="a", item_id="i0")])
        assert answer.error is None, request_type
