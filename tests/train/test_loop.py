"""The training loop: reproducibility, divergence, devices, sampling, schedules, resuming."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mfrec.train.config import TrainConfig
from mfrec.train.errors import TrainingDivergedError
from mfrec.train.interactions import Interactions
from mfrec.train.loop import Trainer

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
    # Past the horizon (a fit extended while VALID improves): cosine restarts at half the peak.
    restart = [trainer.learning_rate(step) for step in range(12, 24)]
    assert restart[0] == pytest.approx(0.05) and restart[-1] < 0.005
    assert all(a >= b for a, b in zip(restart, restart[1:], strict=False))
    assert trainer.learning_rate(24) == pytest.approx(0.025)
    constant = TrainConfig(learning_rate=0.1, lr_schedule="constant")
    constant = Trainer(small_data(), constant, CPU, horizon_epochs=4)
    assert {constant.learning_rate(step) for step in range(12)} == {0.1}


def test_the_padded_last_batch_touches_only_its_real_rows():
    # 9 interactions of 9 distinct users in batches of 8: the second step holds one real
    # interaction and 7 padding copies at weight 0, so only that interaction's user may move.
    data = Interactions.from_ids(np.arange(9), np.arange(9) % 3)
    config = TrainConfig(embedding_dim=4, batch_size=8, num_negatives=2, seed=5)
    trainer = Trainer(data, config, CPU, horizon_epochs=1)
    order = torch.randperm(9, generator=torch.Generator().manual_seed(config.seed))
    calls = iter(range(100))
    assert trainer.run_epoch(should_stop=lambda: next(calls) == 1) is None  # after one step
    before = trainer.model.user_embeddings.detach().clone()
    trainer.run_epoch()
    changed = (trainer.model.user_embeddings != before).any(dim=1).nonzero().flatten()
    last_user = int(data.user_idx[order[8]])
    assert changed.tolist() == [last_user]


def _in_step(event) -> bool:
    parent = event.cpu_parent
    while parent is not None and parent.name != "Trainer.step":
        parent = parent.cpu_parent
    return parent is not None


def test_every_step_has_the_same_ops_and_never_reads_back():
    from torch.profiler import ProfilerActivity, profile

    data = small_data(n=100)  # batches of 32: the fourth holds 4 real rows and 28 of padding
    config = TrainConfig(embedding_dim=4, batch_size=32, num_epochs=1)
    trainer = Trainer(data, config, CPU, horizon_epochs=1)
    steps = []
    for _ in range(trainer.steps_per_epoch):
        calls = iter(range(2))
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            trainer.run_epoch(should_stop=lambda calls=calls: next(calls) == 1)  # one step
        ops = [e for e in prof.events() if e.name.startswith("aten::") and _in_step(e)]
        # On a CPU, fused Adam reads its step count from a CPU tensor (on a GPU it stays there).
        read_back = [
            e for e in ops if e.name == "aten::item" and e.cpu_parent.name != "aten::_fused_adam_"
        ]
        assert not read_back
        steps.append(sorted((e.name, str(e.input_shapes)) for e in ops))
    # The first step also creates the bias optimizer's state; the padded fourth is like the rest.
    assert len(steps) == 4 and steps[3] == steps[2] == steps[1]


@pytest.mark.slow
# Warnings torch's compiler raises about its own internals (warnings are errors here).
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")
def test_the_compiled_step_trains_like_the_eager_one(monkeypatch):
    config = TrainConfig(embedding_dim=4, num_epochs=2, batch_size=64)
    eager, eager_losses = train(small_data(), config)
    monkeypatch.setenv("MFREC_COMPILE", "1")
    compiled, compiled_losses = train(small_data(), config)
    assert compiled._step_size is not None  # the compiled path ran
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-5)
    for a, b in zip(eager.model.parameters(), compiled.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_gpu_resume_matches_an_uninterrupted_run_within_tolerance():
    # index_add_ and the index_select backward accumulate with atomics on a GPU: the order of
    # additions varies, so a resumed run equals the straight one only up to rounding.
    cuda = torch.device("cuda")
    config = TrainConfig(embedding_dim=8, num_epochs=3, batch_size=32, device="cuda")
    data = small_data()
    straight = Trainer(data, config, cuda, horizon_epochs=3)
    straight_losses = [straight.run_epoch() for _ in range(3)]
    trainer = Trainer(data, config, cuda, horizon_epochs=3)
    losses = [trainer.run_epoch()]
    calls = iter(range(100))
    assert trainer.run_epoch(should_stop=lambda: next(calls) == 4) is None
    resumed = Trainer(data, config, cuda, horizon_epochs=3)
    resumed.load_state_dict(trainer.state_dict())
    while resumed.epoch < 3:
        losses.append(resumed.run_epoch())
    assert losses == pytest.approx(straight_losses, rel=1e-3)
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.gpu
def test_gpu_and_cpu_train_alike():
    config = TrainConfig(embedding_dim=8, num_epochs=2, batch_size=32)
    cpu, cpu_losses = train(small_data(), config)
    gpu = Trainer(small_data(), config, torch.device("cuda"), horizon_epochs=2)
    gpu_losses = [gpu.run_epoch() for _ in range(2)]
    # Same seed, same initial weights; the generators differ by device, so the draws differ and
    # only the losses' scale can be compared.
    assert gpu_losses == pytest.approx(cpu_losses, rel=0.1)


def test_batch_size_auto_is_resolved_by_the_device_and_the_negatives_follow_it():
    from mfrec.train.config import AUTO_BATCH, REFERENCE_BATCH, resolve_batch_size

    config = TrainConfig.from_hyperparameters({"batch_size": "auto"})
    assert config.batch_size is None and config.to_dict()["batch_size"] == "auto"
    assert resolve_batch_size(config, "cpu").batch_size == AUTO_BATCH["cpu"] == REFERENCE_BATCH
    on_gpu = resolve_batch_size(config, "cuda")
    assert on_gpu.batch_size == AUTO_BATCH["cuda"] > REFERENCE_BATCH
    assert resolve_batch_size(TrainConfig(batch_size=64), "cuda").batch_size == 64
    trainer = Trainer(small_data(), TrainConfig(embedding_dim=4), CPU, horizon_epochs=1)
    assert trainer.config.batch_size == AUTO_BATCH["cpu"]
    # The rule: the softmax's automatic shared negatives grow as sqrt(batch / 1024).
    assert TrainConfig(batch_size=1024).negatives == 256
    assert TrainConfig(batch_size=512).negatives == 256
    assert TrainConfig(batch_size=16384).negatives == 1024
    assert TrainConfig(batch_size=65536).negatives == 2048
    assert TrainConfig(batch_size=16384, num_negatives=300).negatives == 300  # explicit: kept
    assert TrainConfig(batch_size=16384, loss="bpr").negatives == 4  # per-positive negatives
    # ... and the epochs (and the cosine horizon) as sqrt(batch / 1024) too.
    assert TrainConfig(batch_size=1024, num_epochs=15).epochs == 15
    assert TrainConfig(batch_size=16384, num_epochs=15).epochs == 60
    assert TrainConfig(batch_size=None, num_epochs=15).epochs == 15  # unresolved: as given
    assert TrainConfig(batch_size=16384, early_stopping_patience=5).patience == 20
    assert TrainConfig(batch_size=1024, early_stopping_patience=5).patience == 5
    stretched = Trainer(small_data(), TrainConfig(batch_size=4096), CPU, horizon_epochs=15)
    assert stretched.horizon_epochs == 30  # the schedule spans the rule's epochs
