"""The training loop: reproducibility, divergence, devices, sampling, schedules, resuming."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from mfrec.train.config import TrainConfig
from mfrec.train.device import resolve_device
from mfrec.train.errors import TrainingDivergedError
from mfrec.train.interactions import Interactions
from mfrec.train.loop import Trainer
from mfrec.train.sampling import NegativeSampler, PositiveSet

pytestmark = pytest.mark.usefixtures("one_thread")


CPU = torch.device("cpu")


def small_data(seed=0, num_users=30, num_items=20, n=300) -> Interactions:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, num_users, size=n)
    items = (users % 4 + 4 * rng.integers(0, num_items // 4, size=n)) % num_items
    return Interactions.from_ids(users, items, timestamps=rng.integers(0, 100, size=n))


def train(data, config, epochs=None):
    trainer = Trainer(data, config, CPU, horizon_epochs=config.num_epochs)
    losses = [trainer.run_epoch() for _ in range(epochs or config.num_epochs)]
    return trainer, losses


@pytest.mark.parametrize("loss", ["softmax", "adaptive_hinge"])
def test_same_seed_same_data_gives_identical_weights(loss):
    config = TrainConfig(
        loss=loss, embedding_dim=4, num_epochs=2, batch_size=32, negative_sampling="popularity"
    )
    first, first_losses = train(small_data(), config)
    second, second_losses = train(small_data(), config)
    assert first_losses == second_losses
    for a, b in zip(first.model.parameters(), second.model.parameters(), strict=True):
        assert torch.equal(a, b)
    other, _ = train(small_data(), TrainConfig(**{**config.__dict__, "seed": 7}))
    assert not torch.equal(first.model.item_embeddings, other.model.item_embeddings)


@pytest.mark.parametrize("loss", ["softmax", "bpr", "hinge", "pointwise", "adaptive_hinge"])
def test_absurd_learning_rate_raises_a_named_error_with_the_fix(loss):
    config = TrainConfig(loss=loss, learning_rate=10.0, embedding_dim=4, batch_size=16)
    expected = r"diverged in epoch 1: the loss is .* over 10 times an untrained model's"
    with pytest.raises(TrainingDivergedError, match=expected + r".*lower learning_rate"):
        train(small_data(), config, epochs=1)


def test_nan_weights_raise_the_named_error():
    trainer = Trainer(small_data(), TrainConfig(embedding_dim=4), CPU, horizon_epochs=1)
    with torch.no_grad():
        trainer.model.item_embeddings[0, 0] = float("nan")
    with pytest.raises(TrainingDivergedError, match="NaN or infinite.*raise l2"):
        trainer.run_epoch()


def test_interrupted_epoch_resumes_exactly():
    config = TrainConfig(embedding_dim=4, num_epochs=3, batch_size=32, lr_schedule="cosine")
    data = small_data()
    reference, _ = train(data, config)

    trainer = Trainer(data, config, CPU, horizon_epochs=3)
    trainer.run_epoch()
    calls = iter(range(100))
    assert trainer.run_epoch(should_stop=lambda: next(calls) == 4) is None  # after 4 batches
    state = trainer.state_dict()
    resumed = Trainer(data, config, CPU, horizon_epochs=3)
    resumed.load_state_dict(state)
    assert (resumed.epoch, resumed.batch) == (1, 4)
    while resumed.epoch < 3:
        resumed.run_epoch()
    for a, b in zip(reference.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_learning_rate_schedule():
    config = TrainConfig(
        learning_rate=0.1, num_epochs=4, warmup_epochs=1, lr_schedule="cosine", batch_size=100
    )
    trainer = Trainer(small_data(), config, CPU, horizon_epochs=4)  # 3 steps per epoch
    rates = [trainer.learning_rate(step) for step in range(12)]
    assert rates[:3] == pytest.approx([0.1 / 3, 0.2 / 3, 0.1])  # linear warm-up
    assert rates[3] == pytest.approx(0.1) and rates[-1] < 0.01  # cosine decay towards 0
    assert all(a >= b for a, b in zip(rates[3:], rates[4:], strict=False))
    constant = TrainConfig(learning_rate=0.1, lr_schedule="constant")
    constant = Trainer(small_data(), constant, CPU, horizon_epochs=4)
    assert {constant.learning_rate(step) for step in range(12)} == {0.1}


def test_resolve_device(caplog, monkeypatch):
    with caplog.at_level(logging.INFO, logger="mfrec.train"):
        assert resolve_device("cpu") == CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.INFO, logger="mfrec.train"):
        assert resolve_device("auto") == CPU
    assert "device: cpu (device=auto; " in caplog.text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback without CUDA")
def test_requested_cuda_falls_back_to_cpu_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="mfrec.train"):
        assert resolve_device("cuda:0") == CPU
    assert "CUDA failed to start for device=cuda:0" in caplog.text


def test_popularity_sampler_follows_counts_to_the_power_alpha():
    counts = torch.tensor([0.0, 3.0, 15.0, 63.0])
    generator = torch.Generator().manual_seed(0)
    sampler = NegativeSampler(counts, "popularity", 0.5, generator)
    draws = sampler.sample((200_000,))
    expected = (counts + 1) ** 0.5 / ((counts + 1) ** 0.5).sum()  # 1, 2, 4, 8 over 15
    observed = torch.bincount(draws, minlength=4) / len(draws)
    torch.testing.assert_close(observed, expected, atol=0.005, rtol=0)
    torch.testing.assert_close(sampler.log_prob(torch.tensor([3])), expected[[3]].log())
    uniform = NegativeSampler(counts, "uniform", 0.5, torch.Generator().manual_seed(0))
    assert uniform.log_prob(torch.tensor([0])) is None
    assert set(uniform.sample((1000,)).tolist()) == {0, 1, 2, 3}


def test_positive_set_finds_training_pairs():
    positives = PositiveSet(torch.tensor([0, 0, 2]), torch.tensor([1, 3, 0]), num_items=4)
    found = positives.contains(torch.tensor([0, 2]), torch.tensor([[1, 2, 3], [0, 3, 3]]))
    assert found.tolist() == [[True, False, True], [True, False, False]]


def test_loss_weights_are_event_weights_times_recency():
    data = Interactions.from_ids(["a", "a", "b"], ["x", "y", "x"], timestamps=[2, 1, 5])
    data = Interactions(**{**data.__dict__, "weights": np.array([2.0, 3.0, 4.0], np.float32)})
    config = TrainConfig(recency_min_weight=0.5, embedding_dim=2)
    trainer = Trainer(data, config, CPU, horizon_epochs=1)
    # a's rows are ranked 2/2 and 1/2 by time: recency 1.0 and 0.75; b's only row: 1.0.
    assert trainer.weights.tolist() == pytest.approx([2.0, 2.25, 4.0])
    plain = Trainer(data, TrainConfig(recency_min_weight=1.0), CPU, horizon_epochs=1)
    assert plain.weights.tolist() == [2.0, 3.0, 4.0]
