"""The model: batch scoring equals single scoring, and save -> load gives identical scores."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from mfrec.train import artifact as artifact_io
from mfrec.train.config import TrainConfig
from mfrec.train.interactions import Interactions
from mfrec.train.model import MatrixFactorization
from mfrec.train.pipeline import train_model

pytestmark = pytest.mark.usefixtures("one_thread")


def small_data(seed=0) -> Interactions:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 25, size=400)
    items = (users % 5) * 6 + rng.integers(0, 6, size=400)  # 5 groups of 6 items
    return Interactions.from_ids(
        [f"user_{u:03d}" for u in users], [f"item-{i}" for i in items], timestamps=np.arange(400)
    )


@pytest.fixture(scope="module")
def trained():
    data = small_data()
    config = TrainConfig(
        model="sgd",
        embedding_dim=6,
        num_epochs=3,
        batch_size=64,
        num_negatives=16,
        user_bias=True,
        loss="pointwise",
        device="cpu",
    )
    return data, config, train_model(data, config, out=io.StringIO())


def test_batch_scoring_equals_single_user_and_pair_scoring():
    torch.manual_seed(0)
    model = MatrixFactorization(7, 11, 5, user_bias=True, seed=3)
    with torch.no_grad():
        model.item_biases.normal_()
        model.user_biases.normal_()
    users = torch.arange(7)
    batch = model.score_users(users)
    assert batch.shape == (7, 11)
    for user in range(7):
        single = model.score_users(torch.tensor([user]))[0]
        torch.testing.assert_close(single, batch[user], rtol=1e-6, atol=1e-6)
    pairs_u = users.repeat_interleave(11)
    pairs_i = torch.arange(11).repeat(7)
    with torch.no_grad():
        torch.testing.assert_close(model(pairs_u, pairs_i).reshape(7, 11), batch)
        shared = model.score_shared(users, torch.tensor([10, 0, 3]))
        torch.testing.assert_close(shared, batch[:, [10, 0, 3]])
        per_row = model(users, torch.tensor([[10, 0, 3]]).expand(7, -1))
        torch.testing.assert_close(per_row, batch[:, [10, 0, 3]])


def test_the_formula_is_the_artifacts():
    model = MatrixFactorization(3, 4, 2, user_bias=True, seed=1)
    arrays = model.arrays()
    expected = (
        arrays["user_embeddings"] @ arrays["item_embeddings"].T
        + arrays["user_biases"][:, None]
        + arrays["item_biases"][None, :]
    )
    np.testing.assert_allclose(model.score_users(torch.arange(3)).numpy(), expected, rtol=1e-6)


def test_same_seed_same_initial_weights_and_user_bias_switch():
    a, b = MatrixFactorization(5, 6, 3, seed=9), MatrixFactorization(5, 6, 3, seed=9)
    torch.testing.assert_close(a.user_embeddings, b.user_embeddings, rtol=0, atol=0)
    assert not a.user_biases.requires_grad
    assert MatrixFactorization(5, 6, 3, user_bias=True).user_biases.requires_grad


def test_save_load_gives_identical_scores(trained, tmp_path):
    data, config, result = trained
    model = MatrixFactorization.from_arrays(result.artifact)
    artifact_io.save(result.artifact, tmp_path / "model")
    loaded = artifact_io.load(tmp_path / "model")
    again = MatrixFactorization.from_arrays(loaded)
    users = torch.arange(data.num_users)
    assert torch.equal(model.score_users(users), again.score_users(users))
    assert loaded.user_ids.tolist() == data.user_ids.tolist()
    assert loaded.item_ids.tolist() == data.item_ids.tolist()


def test_artifact_holds_what_serving_needs(trained):
    data, config, result = trained
    artifact = result.artifact
    np.testing.assert_array_equal(artifact.item_popularity, data.item_counts())
    indptr, indices = data.to_csr()
    np.testing.assert_array_equal(artifact.seen_indptr, indptr)
    np.testing.assert_array_equal(artifact.seen_indices, indices)
    chosen = artifact.config["recency_min_weight"]  # recency_min_weight=auto, resolved
    assert chosen in (0.0, 1.0) and artifact.metrics["probes"]
    assert artifact.config == {**config.to_dict(), "recency_min_weight": chosen}
    assert artifact.metrics["mfrec"]["ndcg@10"] == result.metrics["mfrec"]["ndcg@10"]
    assert artifact.user_embeddings.dtype == np.float32 and artifact.embedding_dim == 6
    assert np.any(artifact.user_biases != 0)  # user_bias=True trains them
