"""train_model: progress lines and their regexes, validation, early stopping, refit,
checkpoints (an interrupted and resumed run equals an uninterrupted one), the plot."""

from __future__ import annotations

import io
import logging
import re

import numpy as np
import pytest
import torch

from mfrec.train.config import TrainConfig
from mfrec.train.errors import DataValidationError
from mfrec.train.interactions import Interactions
from mfrec.train.metric_lines import METRIC_DEFINITIONS, METRIC_NAMES
from mfrec.train.metrics import evaluate
from mfrec.train.model import MatrixFactorization
from mfrec.train.phases import MAX_EXTENSIONS
from mfrec.train.pipeline import train_model
from mfrec.train.plot import plot_history, training_figure
from mfrec.train.split import align_to, temporal_split

pytestmark = pytest.mark.usefixtures("one_thread")


CONFIG = TrainConfig(
    model="sgd",  # the phases of one model; model=auto's search: tests/train/test_search.py
    embedding_dim=4,
    num_epochs=4,
    batch_size=64,
    num_negatives=16,
    device="cpu",
    early_stopping_patience=0,
    recency_min_weight=0.0,  # auto's probe is tested on its own (test_train_recency.py)
)


def small_data(seed=0) -> Interactions:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 25, size=400)
    items = (users % 5) * 6 + rng.integers(0, 6, size=400)
    return Interactions.from_ids(users, items, timestamps=rng.integers(0, 1000, size=400))


def run(config=CONFIG, data=None, **kwargs):
    out = io.StringIO()
    result = train_model(data if data is not None else small_data(), config, out=out, **kwargs)
    return result, out.getvalue().splitlines()


def scores(artifact) -> torch.Tensor:
    model = MatrixFactorization.from_arrays(artifact)
    return model.score_users(torch.arange(model.num_users))


@pytest.fixture(scope="module")
def reference():
    return run()


def test_metric_definitions_parse_the_real_lines(reference):
    result, lines = reference
    fit_lines = [line for line in lines if line.startswith("epoch=") and "phase=refit" not in line]
    refit_lines = [line for line in lines if "phase=refit" in line]
    assert len(fit_lines) == 4 and len(refit_lines) == result.metrics["best_epoch"]
    assert lines[-1].startswith("final: ")
    found = {
        d["Name"]: [m.group(1) for m in map(re.compile(d["Regex"]).search, lines) if m]
        for d in METRIC_DEFINITIONS
    }
    assert len(METRIC_DEFINITIONS) <= 40  # SageMaker's limit
    fit_history = [row for row in result.history if "val_ndcg@10" in row]
    assert [float(v) for v in found["train:loss"]] == pytest.approx(
        [row["train_loss"] for row in result.history], rel=1e-5
    )
    for name in METRIC_NAMES:
        assert [float(v) for v in found[f"validation:{name}"]] == pytest.approx(
            [row[f"val_{name}"] for row in fit_history], rel=1e-5
        )
        assert [float(v) for v in found[f"final:validation:{name}"]] == pytest.approx(
            [result.metrics["mfrec"][name]], rel=1e-5
        )
        assert [float(v) for v in found[f"final:popularity:{name}"]] == pytest.approx(
            [result.metrics["popularity"][name]], rel=1e-5
        )
    assert len(found["popularity:ndcg@10"]) == 4
    assert len(found["train:epoch_seconds"]) == len(result.history)


def test_refit_retrains_on_all_data_for_the_best_epoch_count(reference):
    result, _ = reference
    best = result.metrics["best_epoch"]
    assert result.metrics["validation"] == "holdout" and result.metrics["refit"] is True
    assert result.metrics["epochs_trained"] == best
    refit = [row for row in result.history if row.get("phase") == "refit"]
    assert [row["epoch"] for row in refit] == list(range(1, best + 1))
    assert not result.interrupted
    best_fit = max(
        (row for row in result.history if "val_ndcg@10" in row), key=lambda row: row["val_ndcg@10"]
    )
    assert result.metrics["mfrec"]["ndcg@10"] == best_fit["val_ndcg@10"]


def test_without_refit_the_best_validated_epoch_is_kept():
    config = TrainConfig(**{**CONFIG.__dict__, "refit": False})
    result, lines = run(config)
    data = small_data()
    fit, holdout = temporal_split(data, config.validation_fraction)
    model = MatrixFactorization.from_arrays(result.artifact)
    assert evaluate(model, fit, holdout) == result.metrics["mfrec"]
    assert "phase=refit" not in "\n".join(lines) and result.metrics["refit"] is False


def test_early_stopping_after_patience_evaluations_without_improvement():
    # A learning rate this small changes no ranking, so NDCG@10 never improves after epoch 1.
    config = TrainConfig(
        **{**CONFIG.__dict__, "learning_rate": 1e-9, "num_epochs": 20, "early_stopping_patience": 2}
    )
    result, _ = run(config)
    fit_epochs = [row["epoch"] for row in result.history if row.get("phase") != "refit"]
    assert fit_epochs == [1, 2, 3] and result.metrics["best_epoch"] == 1


def test_no_epoch_cap_while_validation_improves_within_the_patience():
    # Early stopping never fires with this patience, so the fit goes on past num_epochs, by
    # num_epochs at a time, up to MAX_EXTENSIONS times num_epochs.
    config = TrainConfig(**{**CONFIG.__dict__, "num_epochs": 2, "early_stopping_patience": 50})
    result, _ = run(config)
    fit_epochs = [row["epoch"] for row in result.history if row.get("phase") != "refit"]
    assert fit_epochs == list(range(1, MAX_EXTENSIONS * 2 + 1))
    refit_epochs = [row["epoch"] for row in result.history if row.get("phase") == "refit"]
    assert refit_epochs == list(range(1, result.metrics["best_epoch"] + 1))
    # Without early stopping (patience 0) num_epochs is the count, as before.
    plain, _ = run(TrainConfig(**{**config.__dict__, "early_stopping_patience": 0}))
    assert [row["epoch"] for row in plain.history if row.get("phase") != "refit"] == [1, 2]


def test_validation_set_is_aligned_and_used_without_refit():
    data = small_data()
    valid = Interactions.from_ids(
        list(data.user_ids[:10]) + ["stranger"], list(data.item_ids[:10]) + [data.item_ids[0]]
    )
    result, lines = run(data=data, valid=valid)
    assert result.metrics["validation"] == "channel" and result.metrics["refit"] is False
    assert result.metrics["validation_dropped"]["unknown_user_rows"] == 1
    aligned, _ = align_to(valid, data)
    model = MatrixFactorization.from_arrays(result.artifact)  # the best epoch's weights
    assert evaluate(model, data, aligned) == result.metrics["mfrec"]
    assert not any("phase=refit" in line for line in lines)


def test_without_validation_all_epochs_train_and_the_final_line_says_so():
    config = TrainConfig(**{**CONFIG.__dict__, "validation_fraction": 0.0, "num_epochs": 3})
    result, lines = run(config)
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert result.metrics["mfrec"] == {} and result.metrics["validation"] == "none"
    final = r"final: train_loss=[0-9.e+-]+; epochs_trained=3; refit=false; model=sgd;"
    assert re.fullmatch(final, lines[-1])


def counting_stop(after: int):
    """A should_stop that turns true on its ``after``-th call (one call per batch)."""
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] > after

    return should_stop, calls


@pytest.mark.parametrize("phase", ["fit", "refit"])
def test_interrupted_and_resumed_run_equals_uninterrupted(reference, tmp_path, caplog, phase):
    expected, _ = reference
    data = small_data()
    fit, _ = temporal_split(data, CONFIG.validation_fraction)
    fit_steps = -(-len(fit) // CONFIG.batch_size)
    refit_steps = -(-len(data) // CONFIG.batch_size)
    # Mid-epoch: in the fit's second epoch, or in the refit's last epoch.
    stop_after = {
        "fit": fit_steps + 2,
        "refit": 4 * fit_steps + (expected.metrics["best_epoch"] - 1) * refit_steps + 3,
    }[phase]
    should_stop, _ = counting_stop(stop_after)
    first, _ = run(checkpoint_dir=tmp_path, should_stop=should_stop)
    assert first.interrupted
    assert len(list(tmp_path.glob("checkpoint-*.pt"))) <= 2
    never, calls = counting_stop(10**9)
    with caplog.at_level(logging.INFO, logger="mfrec.train"):
        resumed, lines = run(checkpoint_dir=tmp_path, should_stop=never)
    assert "resuming from checkpoint" in caplog.text
    total = 4 * fit_steps + expected.metrics["best_epoch"] * refit_steps
    assert calls["n"] == total - stop_after  # it continued rather than starting over
    assert torch.equal(scores(resumed.artifact), scores(expected.artifact))
    strip = [
        {k: v for k, v in row.items() if not k.endswith("_seconds")} for row in resumed.history
    ]
    assert strip == [
        {k: v for k, v in row.items() if not k.endswith("_seconds")} for row in expected.history
    ]
    assert resumed.metrics == expected.metrics and not resumed.interrupted


def test_stop_before_the_first_batch_returns_at_once(tmp_path):
    result, lines = run(checkpoint_dir=tmp_path, should_stop=lambda: True)
    assert result.interrupted and result.history == [] and lines == []
    assert len(list(tmp_path.glob("checkpoint-*.pt"))) == 1


def test_checkpoint_of_another_config_is_ignored(tmp_path, caplog):
    should_stop, _ = counting_stop(5)
    run(checkpoint_dir=tmp_path, should_stop=should_stop)
    other = TrainConfig(**{**CONFIG.__dict__, "seed": 5})
    with caplog.at_level(logging.INFO, logger="mfrec.train"):
        result, _ = run(other, checkpoint_dir=tmp_path)
    assert re.search(r"ignoring checkpoint .*different config", caplog.text)
    assert torch.equal(scores(result.artifact), scores(run(other)[0].artifact))


def test_plot_history_writes_a_png(reference, tmp_path):
    result, _ = reference
    path = plot_history(result.history, tmp_path / "out" / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bare = plot_history([{"epoch": 1, "train_loss": 1.0}], tmp_path / "bare.png")
    assert bare.stat().st_size > 1000


def test_the_training_curve_marks_the_chosen_epoch_and_has_a_light_grid():
    from matplotlib.colors import to_rgb

    history = [
        {"epoch": e, "model": m, "train_loss": 1 / e, "val_ndcg@10": v, "pop_ndcg@10": 0.1}
        for m, values in (("ials", (0.2, 0.3, 0.25)), ("sgd", (0.1, 0.2, 0.35, 0.3)))
        for e, v in enumerate(values, start=1)
    ]
    history.append({"epoch": 1, "model": "sgd", "phase": "refit", "train_loss": 0.9})
    figure = training_figure(history, best_epoch=3, model="sgd")
    loss_axes, ndcg_axes = figure.axes
    for axes in (loss_axes, ndcg_axes):
        marks = [line for line in axes.lines if list(line.get_xdata()) == [3, 3]]
        assert len(marks) == 1 and marks[0].get_linestyle() == ":"  # the chosen epoch
        grid = axes.xaxis.get_gridlines() + axes.yaxis.get_gridlines()
        assert grid and all(line.get_visible() for line in grid)
        assert all(min(to_rgb(line.get_color())) >= 0.8 for line in grid)  # light
    labels = [text.get_text() for text in ndcg_axes.get_legend().get_texts()]
    assert labels == ["ials", "sgd", "chosen: epoch 3", "popularity"]
    ring = next(line for line in ndcg_axes.lines if line.get_label() == "chosen: epoch 3")
    assert (list(ring.get_xdata()), list(ring.get_ydata())) == ([3], [0.35])  # sgd's, not ials'
    loss_labels = [text.get_text() for text in loss_axes.get_legend().get_texts()]
    assert loss_labels == ["ials fit loss", "sgd fit loss", "sgd refit loss", "chosen epoch 3"]


def test_no_interactions_is_a_data_error():
    empty = small_data().subset(np.zeros(400, dtype=bool))
    with pytest.raises(DataValidationError, match="no interactions to train on"):
        run(data=empty)


def test_single_interaction_users_train_without_a_hold_out(caplog):
    data = Interactions.from_ids(["a", "b", "c"], ["x", "y", "x"], timestamps=[1, 2, 3])
    with caplog.at_level(logging.WARNING, logger="mfrec.train"):
        config = TrainConfig(**{**CONFIG.__dict__, "num_epochs": 2, "num_negatives": 2})
        result, _ = run(config, data=data)  # two items: at most two negatives
    assert "too few interactions for a hold-out" in caplog.text
    assert result.metrics["validation"] == "none" and len(result.history) == 2


def test_progress_bar_only_on_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    _, lines = run(TrainConfig(**{**CONFIG.__dict__, "validation_fraction": 0.0}))
    assert "batch" in terminal.getvalue()  # tqdm's bar, on stderr
    assert all("batch/s" not in line for line in lines)  # never on the metric lines
    assert lines[0].startswith("epoch=1; train_loss=")


def test_freed_memory_is_kept_for_reuse_on_glibc_and_left_alone_elsewhere():
    import platform

    from mfrec.train.pipeline import keep_freed_memory

    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is glibc
    blocks = [np.ones(2**23) for _ in range(3)]  # 64 MB each: from the heap now, freed, reused
    del blocks
    assert np.ones(2**23).sum() == 2**23
