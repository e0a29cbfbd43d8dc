"""ModelTensors on small known-answer models: the CPU tensors share the artifact's memory, the
two top-k engines against slow NumPy rankings, fold-in (``als`` and ``mean``) against answers
worked out by hand, and pair scores against the score formula. Fold-in and ranking through the
Recommender are in test_request_types.py; these tests call ModelTensors directly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mfrec.serve import tensors as tensors_module
from mfrec.serve.scoring import Masks
from mfrec.serve.tensors import FOLD_IN_METHODS, ModelTensors
from mfrec.train.artifact import ModelArtifact

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")


def model(user_embeddings, item_embeddings, user_biases=None, item_biases=None, seen=None):
    """Users ``u0``, ``u1``... and items ``i0``, ``i1``...; ``seen``: each user's training items
    (none by default); biases zero by default."""
    num_users, num_items = len(user_embeddings), len(item_embeddings)
    seen = seen if seen is not None else [[] for _ in range(num_users)]
    return ModelArtifact(
        np.asarray(user_embeddings, np.float32),
        np.asarray(item_embeddings, np.float32),
        np.zeros(num_users, np.float32) if user_biases is None else user_biases,
        np.zeros(num_items, np.float32) if item_biases is None else item_biases,
        np.array([f"u{k}" for k in range(num_users)]),
        np.array([f"i{k}" for k in range(num_items)]),
        np.ones(num_items, np.float32),
        np.cumsum([0] + [len(s) for s in seen]),
        np.array([k for s in seen for k in s], dtype=np.int64),
    )


def random_model(seed: int, num_users: int = 20, num_items: int = 50, dim: int = 6):
    rng = np.random.default_rng(seed)
    seen = [
        sorted(rng.choice(num_items, rng.integers(0, 6), replace=False)) for _ in range(num_users)
    ]
    return model(
        rng.normal(size=(num_users, dim)),
        rng.normal(size=(num_items, dim)),
        rng.normal(size=num_users).astype(np.float32),
        rng.normal(size=num_items).astype(np.float32),
        seen,
    )


def histories(*lists) -> list[np.ndarray]:
    return [np.array(items, dtype=np.int64) for items in lists]


# --- tensors ---------------------------------------------------------------------------------


def test_cpu_tensors_share_the_artifacts_memory():
    artifact = random_model(0)
    tensors = ModelTensors(artifact, CPU)
    for name in ("user_embeddings", "user_biases", "item_embeddings", "item_biases"):
        tensor, array = getattr(tensors, name), getattr(artifact, name)
        assert tensor.dtype == torch.float32 and tensor.device == CPU
        assert np.shares_memory(tensor.numpy(), array), name


def test_read_only_and_float64_arrays_become_float32_copies():
    artifact = random_model(1)
    read_only = artifact.item_embeddings
    read_only.setflags(write=False)  # torch.from_numpy would warn: warnings are errors here
    artifact.user_embeddings = artifact.user_embeddings.astype(np.float64)
    tensors = ModelTensors(artifact, CPU)
    assert not np.shares_memory(tensors.item_embeddings.numpy(), read_only)
    np.testing.assert_array_equal(tensors.item_embeddings.numpy(), read_only)
    assert tensors.user_embeddings.dtype == torch.float32
    np.testing.assert_array_equal(tensors.user_embeddings.numpy(), artifact.user_embeddings)


def test_derived_quantities():
    items = [[1, 0], [0, 2], [3, 4]]
    tensors = ModelTensors(model([[1, 0], [0, 2], [6, 8]], items), CPU)
    np.testing.assert_array_equal(tensors.gram.numpy(), [[10, 12], [12, 20]])
    assert tensors.gram_scale == 15.0  # trace(V'V) / dim
    assert tensors.user_norm == 2.0  # median of 1, 2, 10
    index = tensors.indices([2, 0])
    assert (index.dtype, index.tolist()) == (torch.int64, [2, 0])


def test_a_model_without_users_has_unit_user_norm():
    assert ModelTensors(model(np.empty((0, 2)), [[1, 0], [0, 1]]), CPU).user_norm == 1.0


# --- top-k engines ---------------------------------------------------------------------------


def slow_ranking(scores: np.ndarray, banned=()) -> list[int]:
    """Item indices by descending score, ties to the lower index."""
    return sorted(set(range(len(scores))) - set(banned), key=lambda i: (-scores[i], i))


def test_by_score_equals_a_slow_ranking_with_biases():
    artifact = random_model(2)
    tensors = ModelTensors(artifact, CPU)
    items, scores = tensors.by_score.search(
        tensors.user_embeddings, 10, Masks(), offsets=tensors.user_biases
    )
    for u in range(artifact.num_users):
        full = (
            artifact.user_embeddings[u].astype(np.float64) @ artifact.item_embeddings.T
            + artifact.user_biases[u]
            + artifact.item_biases
        )
        want = slow_ranking(full)[:10]
        assert items[u].tolist() == want
        np.testing.assert_allclose(scores[u], full[want], rtol=1e-5, atol=1e-5)


def test_by_score_with_masks_and_tied_scores():
    """Integer embeddings: exact scores in float32, with ties straddling the cut."""
    rng = np.random.default_rng(3)
    artifact = model(
        rng.integers(-2, 3, size=(8, 2)),
        rng.integers(-1, 2, size=(30, 2)),
        item_biases=rng.integers(0, 2, 30).astype(np.float32),
    )
    tensors = ModelTensors(artifact, CPU)
    banned = [rng.choice(30, 5, replace=False) for _ in range(8)]
    items, scores = tensors.by_score.search(
        tensors.user_embeddings, 7, Masks.from_lists(banned, [None] * 8)
    )
    for u in range(8):
        full = artifact.user_embeddings[u] @ artifact.item_embeddings.T + artifact.item_biases
        want = slow_ranking(full, banned[u].tolist())[:7]
        assert items[u].tolist() == want
        assert scores[u].tolist() == full[want].tolist()


ANGLES = np.radians([0, 10, 30, 60, 100, 180])
LENGTHS = [1, 5, 0.5, 2, 3, 1]


def test_by_cosine_ranks_by_angle_whatever_the_lengths():
    items = np.stack([np.cos(ANGLES), np.sin(ANGLES)], axis=1) * np.array(LENGTHS)[:, None]
    items = np.vstack([items, [[0, 0]]])  # i6: a zero vector has cosine 0 with everything
    tensors = ModelTensors(model([[1, 0]], items), CPU)
    engine = tensors.by_cosine
    assert engine is tensors.by_cosine  # built once
    np.testing.assert_allclose(engine.keys.norm(dim=1).numpy(), [1] * 6 + [0], atol=1e-6)
    found, scores = engine.search(engine.keys[tensors.indices([0, 3])], 7, Masks())
    assert found.tolist() == [[0, 1, 2, 3, 6, 4, 5], [3, 2, 4, 1, 0, 6, 5]]
    cosines = np.cos(np.append(ANGLES - ANGLES[0], np.pi / 2))
    np.testing.assert_allclose(scores[0], cosines[found[0]], atol=1e-6)
    cosines = np.cos(np.append(ANGLES - ANGLES[3], np.pi / 2))
    np.testing.assert_allclose(scores[1], cosines[found[1]], atol=1e-6)


def test_by_cosine_equals_a_slow_cosine_ranking():
    artifact = random_model(4)
    tensors = ModelTensors(artifact, CPU)
    engine = tensors.by_cosine
    items = artifact.item_embeddings.astype(np.float64)
    found, scores = engine.search(engine.keys, 5, Masks())
    for item in range(artifact.num_items):
        cosines = (
            items @ items[item] / (np.linalg.norm(items, axis=1) * np.linalg.norm(items[item]))
        )
        assert found[item].tolist() == slow_ranking(cosines)[:5]
        assert found[item, 0] == item
        np.testing.assert_allclose(scores[item], cosines[found[item]], atol=1e-6)


# --- fold-in ---------------------------------------------------------------------------------


def test_als_fold_in_known_answer():
    """V = 2I: V'V = 4I, so regularization 0.5 acts as 0.5 * trace(V'V) / dim = 2. History [0],
    confidence 5: (4I + 2I + 4 v0 v0') u = 5 v0 + 2 u0, i.e. diag(22, 6) u = (10, 0) + 2 u0."""
    tensors = ModelTensors(model([[1, 1]], [[2, 0], [0, 2]], seen=[[1]]), CPU)
    vectors = tensors.fold_in(
        histories([0], [0], [], []), tensors.indices([-1, 0, 0, -1]), "als", 5.0, 0.5
    )
    want = [[5 / 11, 0], [12 / 22, 2 / 6], [1, 1], [0, 0]]
    # Unknown user; known user (trained vector as prior, training items not re-added); known
    # user with nothing new keeps the trained vector; unknown user with nothing: zero.
    np.testing.assert_allclose(vectors.numpy(), want, rtol=1e-6, atol=1e-7)


def test_mean_fold_in_known_answer():
    """The mean direction of the history's item vectors at the median user norm (2 here)."""
    items = [[1, 0], [0, 1], [3, 4], [0, 5]]
    tensors = ModelTensors(model([[1, 0], [0, 2], [10, 0]], items, seen=[[2], [], [0]]), CPU)
    vectors = tensors.fold_in(
        histories([0, 1], [2], [0, 2], [0], [1], [3, 3], []),
        tensors.indices([-1, -1, -1, -1, 1, -1, -1]),
        "mean",
        40.0,
        0.1,
    )
    root2 = np.sqrt(2)
    want = [[root2, root2], [1.2, 1.6], [root2, root2], [2, 0], [0, 2], [0, 2], [0, 0]]
    np.testing.assert_allclose(vectors.numpy(), want, rtol=1e-6)
    history = histories([0, 2, 3])[0]
    mean = np.asarray(items, np.float64)[history].mean(axis=0)
    (vector,) = tensors.fold_in([history], tensors.indices([-1]), "mean", 40.0, 0.1).numpy()
    np.testing.assert_allclose(vector, mean / np.linalg.norm(mean) * 2, rtol=1e-6)


def test_mean_fold_in_adds_a_known_users_training_items():
    items = [[1, 0], [0, 1], [3, 4]]
    tensors = ModelTensors(model([[1, 0], [0, 2], [10, 0]], items, seen=[[2], [], [0]]), CPU)
    known, unknown = tensors.fold_in(
        histories([0], [0]), tensors.indices([0, -1]), "mean", 40.0, 0.1
    ).numpy()
    np.testing.assert_allclose(known, [np.sqrt(2), np.sqrt(2)], rtol=1e-6)  # (1,0) + (3,4)
    np.testing.assert_allclose(unknown, [2, 0], rtol=1e-6)


def test_mean_fold_in_keeps_the_trained_vector_when_nothing_is_new():
    artifact = model([[1, 0]], [[1, 0], [0, 1], [3, 4]], seen=[[2]])
    tensors = ModelTensors(artifact, CPU)
    (vector,) = tensors.fold_in(histories([]), tensors.indices([0]), "mean", 40.0, 0.1).numpy()
    np.testing.assert_array_equal(vector, [1, 0])


@pytest.mark.parametrize("method", FOLD_IN_METHODS)
def test_fold_in_in_small_batches_equals_one_batch_and_single_rows(method, monkeypatch):
    artifact = random_model(5)
    rng = np.random.default_rng(6)
    fresh = [rng.choice(artifact.num_items, n) for n in [2, 0, 5, 1, 3, 0, 4, 6]]
    users = [-1, 3, 0, -1, 7, -1, 3, 19]
    tensors = ModelTensors(artifact, CPU)
    whole = tensors.fold_in(fresh, tensors.indices(users), method, 40.0, 0.1).numpy()
    monkeypatch.setattr(tensors_module, "FOLD_IN_BATCH", 3)
    batched = tensors.fold_in(fresh, tensors.indices(users), method, 40.0, 0.1).numpy()
    np.testing.assert_allclose(batched, whole, rtol=1e-5, atol=1e-6)
    for row, (history, user) in enumerate(zip(fresh, users, strict=True)):
        (single,) = tensors.fold_in([history], tensors.indices([user]), method, 40.0, 0.1).numpy()
        np.testing.assert_allclose(single, whole[row], rtol=1e-5, atol=1e-6)


def clusters() -> ModelArtifact:
    """Three clusters of four items along e0, e1, e2 (each leaning a little to the next axis);
    user c points at cluster c and has seen its first three items."""
    items = [
        (1 + 0.1 * j) * np.eye(3)[c] + 0.2 * np.eye(3)[(c + 1) % 3]
        for c in range(3)
        for j in range(4)
    ]
    item_biases = np.tile([0.0, 0.05, 0.0, 0.05], 3).astype(np.float32)
    seen = [[4 * c, 4 * c + 1, 4 * c + 2] for c in range(3)]
    return model(2 * np.eye(3), items, item_biases=item_biases, seen=seen)


@pytest.mark.parametrize("method", FOLD_IN_METHODS)
def test_fold_in_of_a_users_training_history_recovers_their_top_items(method):
    artifact = clusters()
    tensors = ModelTensors(artifact, CPU)
    own = [artifact.seen_items(u) for u in range(3)]
    vectors = tensors.fold_in(own, tensors.indices([-1, -1, -1]), method, 40.0, 0.1)
    trained, _ = tensors.by_score.search(tensors.user_embeddings, 4, Masks())
    folded, _ = tensors.by_score.search(vectors, 4, Masks())
    assert trained.tolist() == [[3, 2, 1, 0], [7, 6, 5, 4], [11, 10, 9, 8]]
    assert folded.tolist() == trained.tolist()


# --- pair scores -----------------------------------------------------------------------------


def test_pair_scores_equal_the_score_formula():
    artifact = random_model(7)
    tensors = ModelTensors(artifact, CPU)
    users = np.array([2, -1, 0, 2, 5])
    items = histories([5, 1, 5], [3, 4], [], [0], [49])
    got = tensors.pair_scores(users, items)
    assert [len(s) for s in got] == [3, 0, 0, 1, 1]  # an unknown user (-1) gets no scores
    for user, want_items, scores in zip(users, items, got, strict=True):
        if user < 0:
            continue
        want = (
            artifact.item_embeddings[want_items].astype(np.float64) @ artifact.user_embeddings[user]
            + artifact.user_biases[user]
            + artifact.item_biases[want_items]
        )
        assert scores.dtype == np.float64
        np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-6)


def test_pair_scores_agree_with_by_score():
    artifact = random_model(8)
    tensors = ModelTensors(artifact, CPU)
    top, scores = tensors.by_score.search(
        tensors.user_embeddings, 5, Masks(), offsets=tensors.user_biases
    )
    pairs = tensors.pair_scores(np.arange(artifact.num_users), list(top))
    np.testing.assert_allclose(np.stack(pairs), scores, rtol=1e-5, atol=1e-6)


def test_pair_scores_with_no_known_user_or_no_items():
    tensors = ModelTensors(random_model(9), CPU)
    nothing = tensors.pair_scores(np.array([-1, -1]), histories([1, 2], [3]))
    assert [s.shape for s in nothing] == [(0,), (0,)]
    empty = tensors.pair_scores(np.array([0, 1]), histories([], []))
    assert [s.shape for s in empty] == [(0,), (0,)]
