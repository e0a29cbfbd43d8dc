"""The Recommender on known-answer models: exact rankings, seen-item masking, fallbacks, and the
vectorised top-k against a slow loop."""

from __future__ import annotations

import numpy as np
import pytest

from mfrec.serve import scoring
from mfrec.serve.recommender import Recommender
from mfrec.serve.requests import Recommendation, Request
from mfrec.train.artifact import ModelArtifact, save
from mfrec.train.device import resolve_device
from mfrec.train.errors import ConfigError

USER_IDS = ["user_000061", "3f2b8a4e-1c9d-4e7a-9b1f-0d2c6e8a7b55", "685", "302", "u4", "u5"]
NUM_ITEMS = 8


def known_answer(user_ids=USER_IDS, num_items=NUM_ITEMS, seen=None) -> ModelArtifact:
    """User u ranks items by |u - i|, ties to the smaller i (score 2ui - i^2 - i/2n, exact in
    float32); user u has seen item u unless ``seen`` (lists of item indices) says otherwise;
    item i's popularity is num_items - i."""
    u = np.arange(len(user_ids), dtype=np.float32)
    i = np.arange(num_items, dtype=np.float32)
    seen = seen if seen is not None else [[k % num_items] for k in range(len(user_ids))]
    return ModelArtifact(
        user_embeddings=np.stack([2 * u, -np.ones_like(u)], axis=1),
        item_embeddings=np.stack([i, i**2], axis=1),
        user_biases=np.zeros(len(user_ids), np.float32),
        item_biases=(-i / (2 * num_items)).astype(np.float32),
        user_ids=np.array(user_ids),
        item_ids=np.array([f"item-{k}" for k in range(num_items)]),
        item_popularity=(num_items - i).astype(np.float32),
        seen_indptr=np.cumsum([0] + [len(s) for s in seen]),
        seen_indices=np.array([k for s in seen for k in s], dtype=np.int64),
    )


def expected(u: int, top_n: int, exclude: list[int] = ()) -> tuple[list[str], list[float]]:
    ranking = [
        i for i in sorted(range(NUM_ITEMS), key=lambda i: ((u - i) ** 2, i)) if i not in exclude
    ][:top_n]
    return [f"item-{i}" for i in ranking], [
        2 * u * i - i * i - i / (2 * NUM_ITEMS) for i in ranking
    ]


def numbered_model(user_embeddings, item_embeddings, user_biases, item_biases, seen):
    """A model of users ``u0``, ``u1``... and items ``i0``, ``i1``...; ``seen``: each user's
    training items; popularity: all ones."""
    num_users, num_items = len(user_embeddings), len(item_embeddings)
    return ModelArtifact(
        user_embeddings,
        item_embeddings,
        user_biases,
        item_biases,
        np.array([f"u{k}" for k in range(num_users)]),
        np.array([f"i{k}" for k in range(num_items)]),
        np.ones(num_items, np.float32),
        np.cumsum([0] + [len(s) for s in seen]),
        np.array([k for s in seen for k in s], dtype=np.int64),
    )


@pytest.fixture
def rec() -> Recommender:
    return Recommender(known_answer(), "cpu")


def test_known_answer_ranking_without_seen_items_masked(rec):
    answers = rec.recommend(USER_IDS, top_n=NUM_ITEMS, exclude_seen=False)
    for u, (item_ids, scores) in enumerate(answers):
        assert (list(item_ids), scores.tolist()) == expected(u, NUM_ITEMS)


def test_seen_items_are_excluded_by_default(rec):
    for u, answer in enumerate(rec.recommend(USER_IDS, top_n=3)):
        assert (list(answer.item_ids), answer.scores.tolist()) == expected(u, 3, exclude=[u])
        assert answer.note is None and answer.error is None


def test_batch_equals_single_requests_and_keeps_order(rec):
    users = USER_IDS[::-1] + USER_IDS[:2]
    top_ns = [1, 2, 3, 4, 5, 6, 7, 8]
    batch = rec.recommend(users, top_ns)
    singles = [rec.recommend([u], n)[0] for u, n in zip(users, top_ns, strict=True)]
    for one, other in zip(batch, singles, strict=True):
        assert list(one.item_ids) == list(other.item_ids)
        np.testing.assert_array_equal(one.scores, other.scores)
    assert [len(a.item_ids) for a in batch] == [min(n, NUM_ITEMS - 1) for n in top_ns]


def test_chunked_scoring_gives_the_same_answers(rec, monkeypatch):
    whole = rec.recommend(USER_IDS, NUM_ITEMS)
    monkeypatch.setattr(scoring, "SCORES_PER_CHUNK", NUM_ITEMS * 2)  # 2 users/chunk
    chunked = Recommender(known_answer(), "cpu").recommend(USER_IDS, NUM_ITEMS)
    assert [list(a.item_ids) for a in whole] == [list(a.item_ids) for a in chunked]


def test_unknown_user_gets_the_popularity_list_with_a_note(rec):
    (answer,) = rec.recommend(["nobody"], top_n=3)
    assert list(answer.item_ids) == ["item-0", "item-1", "item-2"]
    assert answer.scores.tolist() == [8.0, 7.0, 6.0]
    assert answer.note == "user 'nobody' is not in the model: most popular items"


def test_unknown_user_error_when_configured():
    rec = Recommender(known_answer(), "cpu", unknown_user="error")
    unknown, known = rec.recommend(["nobody", "685"], top_n=2)
    assert unknown.error == "user 'nobody' is not in the model" and len(unknown.item_ids) == 0
    assert list(known.item_ids) == expected(2, 2, exclude=[2])[0]


def test_top_n_defaults_limits_and_catalogue_size():
    rec = Recommender(known_answer(), "cpu", default_top_n=2, max_top_n=5)
    default, too_many, zero = rec.recommend(["685"] * 3, [None, 6, 0])
    assert len(default.item_ids) == 2
    assert too_many.error == "top_n=6 is out of range; use 1 to 5"
    assert zero.error == "top_n=0 is out of range; use 1 to 5"
    everything = Recommender(known_answer(), "cpu", max_top_n=100).recommend(["685"], 100)[0]
    assert len(everything.item_ids) == NUM_ITEMS - 1


def test_user_who_has_seen_every_item_gets_fewer_items():
    seen = [list(range(NUM_ITEMS)), [0, 1, 2, 3, 4, 5], [], [], [], []]
    rec = Recommender(known_answer(seen=seen), "cpu")
    everything, most, nothing = rec.recommend(USER_IDS[:3], top_n=4)
    assert len(everything.item_ids) == 0 and everything.error is None
    assert list(most.item_ids) == ["item-6", "item-7"]
    assert list(nothing.item_ids) == expected(2, 4)[0]


def test_answer_mixes_request_types_in_order(rec):
    requests = [
        Request.from_fields(user_id="302", top_n=1),
        Request.from_fields(top_n=2),
        Request(type="teleport"),
        Request.from_fields(user_id="u4", top_n=1),
    ]
    user, popular, unknown, other = rec.answer(requests)
    assert [popular.item_ids.tolist(), user.item_ids.tolist(), other.item_ids.tolist()] == [
        ["item-0", "item-1"],
        expected(3, 1, [3])[0],
        expected(4, 1, [4])[0],
    ]
    assert popular.note is None
    assert unknown.error.startswith("request type 'teleport' is not known; use one of")
    assert [r.type for r in requests[:2]] == ["user", "popular"]


def test_recommendation_unpacks_like_implicit():
    item_ids, scores = Recommendation(np.array(["a"], dtype=object), np.array([1.0]))
    assert list(item_ids) == ["a"] and scores.tolist() == [1.0]


def test_matches_a_slow_loop_on_a_random_model():
    rng = np.random.default_rng(7)
    num_users, num_items = 40, 300
    seen = [
        sorted(rng.choice(num_items, size=rng.integers(0, 30), replace=False).tolist())
        for _ in range(num_users)
    ]
    artifact = numbered_model(
        rng.normal(size=(num_users, 16)).astype(np.float32),
        rng.normal(size=(num_items, 16)).astype(np.float32),
        rng.normal(size=num_users).astype(np.float32),
        rng.normal(size=num_items).astype(np.float32),
        seen,
    )
    answers = Recommender(artifact, "cpu").recommend(list(artifact.user_ids), top_n=10)
    for u, answer in enumerate(answers):
        scores = [
            (
                float(artifact.user_embeddings[u] @ artifact.item_embeddings[i])
                + artifact.user_biases[u]
                + artifact.item_biases[i],
                i,
            )
            for i in range(num_items)
            if i not in seen[u]
        ]
        best = sorted(scores, reverse=True)[:10]
        assert list(answer.item_ids) == [f"i{i}" for _, i in best]
        np.testing.assert_allclose(answer.scores, [s for s, _ in best], atol=1e-4)


def test_from_dir_round_trip_and_warm_up(tmp_path):
    save(known_answer(), tmp_path / "model")
    rec = Recommender.from_dir(tmp_path / "model", device="cpu")
    rec.warm_up()
    assert rec.device.type == "cpu"
    assert list(rec.recommend(["685"], 2)[0].item_ids) == expected(2, 2, [2])[0]


def test_the_user_index_is_built_on_first_use_or_in_the_background():
    rec = Recommender(known_answer(), "cpu")
    rec.warm_up()  # a history request: needs no user index
    assert rec._user_index is None
    rec.index_users_in_background().join(timeout=10)
    assert rec._user_index == {user_id: idx for idx, user_id in enumerate(USER_IDS)}
    lazy = Recommender(known_answer(), "cpu")
    assert list(lazy.recommend(["685"], 2)[0].item_ids) == expected(2, 2, [2])[0]


def test_bad_options_raise_config_errors():
    with pytest.raises(ConfigError, match="unknown_user='maybe'; use one of"):
        Recommender(known_answer(), unknown_user="maybe")
    with pytest.raises(ConfigError, match="default_top_n=10 must be between 1 and max_top_n=5"):
        Recommender(known_answer(), default_top_n=10, max_top_n=5)
    with pytest.raises(ConfigError, match="device 'tpu' is not known"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="top_n has 1 entries for 2 user_ids"):
        Recommender(known_answer()).recommend(["685", "302"], [3])


def test_auto_device_is_the_cpu_without_cuda():
    assert resolve_device("cpu").type == "cpu"
    if not scoring.torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"


def test_tied_scores_rank_the_lower_item_index_first_as_evaluation_does():
    """Scores u * v_i with three values of v: ties straddle every top_n; the served list is the
    one the metrics rank (mfrec.train.ranking.top_k): descending score, then item index."""
    rng = np.random.default_rng(11)
    num_users, num_items = 12, 60
    values = rng.integers(0, 3, num_items).astype(np.float32)
    seen = [sorted(rng.choice(num_items, 8, replace=False).tolist()) for _ in range(num_users)]
    artifact = numbered_model(
        rng.integers(1, 4, size=(num_users, 1)).astype(np.float32),
        values[:, None],
        np.zeros(num_users, np.float32),
        np.zeros(num_items, np.float32),
        seen,
    )
    answers = Recommender(artifact, "cpu").recommend(list(artifact.user_ids), top_n=7)
    for u, answer in enumerate(answers):
        score = artifact.user_embeddings[u, 0] * values
        ranked = sorted(set(range(num_items)) - set(seen[u]), key=lambda i: (-score[i], i))
        assert list(answer.item_ids) == [f"i{i}" for i in ranked[:7]]
