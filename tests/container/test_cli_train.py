"""``mfrec train``: local mode, SageMaker mode as a real subprocess, SIGTERM and resume."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mfrec.cli import main
from mfrec.train.artifact import load
from mfrec.train.config import TrainConfig
from mfrec.train.ingest import ImportOptions

FAST = {"num_epochs": "2", "embedding_dim": "8", "device": "cpu", "loss": "bpr"}
DOCS = Path(__file__).resolve().parents[2] / "docs" / "training.md"


def write_interactions(path: Path, num_users: int = 60, per_user: int = 20) -> Path:
    """Users in four taste groups over 40 items, timestamps increasing; >= the data minimums."""
    rng = np.random.default_rng(1)
    lines = ["user_id,item_id,timestamp"]
    for user in range(num_users):
        items = (user % 4) * 10 + rng.integers(0, 10, per_user)
        lines += [
            f"u{user},i{item},{1_600_000_000 + 100 * user + n}" for n, item in enumerate(items)
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def make_layout(base: Path, hyperparameters: dict, data: str | None = None) -> Path:
    (base / "input" / "config").mkdir(parents=True)
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    csv = base / "input" / "data" / "training" / "interactions.csv"
    if data is None:
        write_interactions(csv)
    else:
        csv.parent.mkdir(parents=True)
        csv.write_text(data)
    return base


def settings(hyperparameters: dict) -> list[str]:
    return ["--set", *(f"{key}={value}" for key, value in hyperparameters.items())]


def mfrec_command() -> list[str]:
    script = Path(sys.executable).with_name("mfrec")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mfrec"]


def assert_same_scores(model_a: Path, model_b: Path) -> None:
    # Not bit-exact: with several CPU threads torch's reductions differ in the last float bits
    # from run to run; a different model (wrong resume, other data) differs by far more.
    np.testing.assert_allclose(
        scores(model_a), scores(model_b), rtol=1e-4, atol=1e-6, err_msg=f"{model_a} != {model_b}"
    )


def scores(model_dir: Path) -> np.ndarray:
    artifact = load(model_dir)
    return (
        artifact.user_embeddings @ artifact.item_embeddings.T
        + artifact.user_biases[:, None]
        + artifact.item_biases[None, :]
    )


def test_local_mode_trains_with_set_strings(tmp_path, capsys):
    data = write_interactions(tmp_path / "data" / "part.csv")
    args = ["train", "--data", str(data.parent), "--model-dir", str(tmp_path / "model")]
    args += ["--output-dir", str(tmp_path / "out"), *settings({**FAST, "user_bias": "TRUE"})]
    assert main(args) == 0
    assert load(tmp_path / "model").config["user_bias"] is True
    assert (tmp_path / "out" / "metrics.json").is_file()
    assert "epoch=" in capsys.readouterr().out


def test_local_and_sagemaker_modes_give_the_same_model(tmp_path):
    base = make_layout(tmp_path / "ml", FAST)
    assert main(["train", "--base-dir", str(base)]) == 0
    data = base / "input" / "data" / "training"
    assert (
        main(["train", "--data", str(data), "--model-dir", str(tmp_path / "m"), *settings(FAST)])
        == 0
    )
    assert_same_scores(base / "model", tmp_path / "m")


def test_metric_definitions_match_the_lines_training_prints(tmp_path, capsys):
    assert main(["train", "--print-metric-definitions"]) == 0
    definitions = json.loads(capsys.readouterr().out)
    assert definitions and all(set(d) == {"Name", "Regex"} for d in definitions)
    data = write_interactions(tmp_path / "data.csv")
    args = ["train", "--data", str(data), "--model-dir", str(tmp_path / "model"), *settings(FAST)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    for definition in definitions:
        match = re.search(definition["Regex"], printed)
        assert match, f"{definition['Name']} matches no line of:\n{printed}"
        float(match.group(1))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "x.csv"], "--model-dir DIR is required"),
        (["--model-dir", "m"], "--model-dir need --data PATH"),
        (["--data", "x", "--model-dir", "m", "--base-dir", "b"], "--base-dir is for SageMaker"),
        (["--data", "x", "--model-dir", "m", "--set", "num_epochs"], "is not KEY=VALUE"),
    ],
)
def test_bad_arguments_are_user_errors(args, message, capsys):
    assert main(["train", *args]) == 1
    assert message in capsys.readouterr().err


def test_import_flags_are_hyperparameters_in_local_mode(tmp_path, capsys):
    data = write_interactions(tmp_path / "data.csv")
    with data.open("a") as handle:
        handle.write("u1,,1600000000\n")  # a row without an item
    args = ["train", "--data", str(data), "--model-dir", str(tmp_path / "m"), *settings(FAST)]
    assert main(args) == 1
    assert "--on-bad-rows skip" in capsys.readouterr().err
    assert main([*args, "--on-bad-rows", "skip"]) == 0
    assert main([*args, "--on-bad-rows", "skip", "--set", "on_bad_rows=error"]) == 1
    assert "on_bad_rows is given twice" in capsys.readouterr().err


def test_local_mode_unknown_setting_writes_the_failure_file(tmp_path):
    data = write_interactions(tmp_path / "data.csv")
    out = tmp_path / "out"
    args = ["train", "--data", str(data), "--model-dir", str(tmp_path / "m")]
    assert main([*args, "--output-dir", str(out), "--set", "embeding_dim=8"]) == 1
    assert "did you mean 'embedding_dim'?" in (out / "failure").read_text()


def test_subprocess_exit_code_and_failure_file_for_bad_data(tmp_path):
    base = make_layout(tmp_path, FAST, data="user_id,item_id\nu1,i1\n")
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base)}
    done = subprocess.run([*mfrec_command(), "train"], env=env, capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    failure = (base / "output" / "failure").read_text()
    assert failure.startswith("DataValidationError: ") and len(failure.splitlines()[0]) < 1024
    assert failure.splitlines()[0] in " ".join(done.stderr.split())
    assert not (base / "model").exists() or not any((base / "model").iterdir())


def test_sigterm_checkpoints_and_a_restart_ends_with_the_uninterrupted_model(tmp_path):
    # Many cheap epochs without validation, so SIGTERM lands in the middle of training.
    hyperparameters = {**FAST, "num_epochs": "20", "validation_fraction": "0", "batch_size": "128"}
    base = make_layout(tmp_path / "interrupted", hyperparameters)
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [*mfrec_command(), "train"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in process.stdout:
        if line.startswith("epoch="):
            process.send_signal(signal.SIGTERM)
            break
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "SIGTERM received" in stderr
    metrics = json.loads((base / "output" / "data" / "metrics.json").read_text())
    assert metrics["interrupted"] is True, "training ended before SIGTERM arrived"
    assert any((base / "checkpoints").iterdir())

    assert main(["train", "--base-dir", str(base)]) == 0  # the restarted job resumes
    reference = make_layout(tmp_path / "reference", hyperparameters)
    assert main(["train", "--base-dir", str(reference)]) == 0
    assert_same_scores(base / "model", reference / "model")


def test_docs_list_every_hyperparameter_and_the_current_metric_definitions():
    from mfrec.train.metric_lines import METRIC_DEFINITIONS

    text = DOCS.read_text()
    for name in (*TrainConfig.hyperparameter_names(), *ImportOptions.hyperparameter_names()):
        assert f"| `{name}` |" in text, f"docs/training.md does not document {name}"
    pasted = text.split("<!-- generated from mfrec.train.metric_lines.METRIC_DEFINITIONS")[1]
    pasted = pasted.split("```json\n")[1].split("\n```")[0]
    assert json.loads(pasted) == METRIC_DEFINITIONS


def test_docs_show_the_current_defaults():
    """The Default column of docs/training.md is TrainConfig's, so the docs cannot go stale."""
    text = DOCS.read_text()
    import dataclasses

    for field in dataclasses.fields(TrainConfig):
        name, value = field.name, field.default
        if value is None:
            value = "auto"
        elif isinstance(value, bool):
            value = str(value).lower()
        row = next(line for line in text.splitlines() if line.startswith(f"| `{name}` |"))
        assert row.split("|")[2].strip() == f"`{value}`", f"{name}: docs say {row.split('|')[2]}"
