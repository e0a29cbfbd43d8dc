"""Faults around a training job (issue 17): a malformed resourceconfig.json, a full disk
anywhere the job writes, leftovers of a job killed while writing, and a num_negatives larger
than the catalogue. Each must end as exit 1 with a failure file that says what to do, and leave
no partial files behind; never exit 2, a 0-byte failure file or a silent exit 0 without a model.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import re
from pathlib import Path

import pytest

from mfrec import job_process, training_job
from mfrec.train import checkpoint
from mfrec.train.artifact import load

# One quick SGD fit: no probes (model and recency given), one epoch.
QUICK = {
    "model": "sgd",
    "recency_min_weight": "1",
    "num_epochs": "1",
    "embedding_dim": "4",
    "batch_size": "256",
    "device": "cpu",
    "loss": "bpr",
}


def layout(base: Path, resources: object = None, hyperparameters: dict | None = None) -> Path:
    config = base / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters or QUICK))
    resources = {"current_host": "algo-1", "hosts": ["algo-1"]} if resources is None else resources
    (config / "resourceconfig.json").write_text(json.dumps(resources))
    data = base / "input" / "data" / "training"
    data.mkdir(parents=True)
    rows = ["user_id,item_id,timestamp"]
    rows += [f"u{k % 50},i{(k * 7) % 40},{1_600_000_000 + k}" for k in range(1_000)]
    (data / "part-0.csv").write_text("\n".join(rows) + "\n")
    return base


def failure(base: Path) -> str:
    return (base / "output" / "failure").read_text()


def leftovers(folder: Path) -> list[str]:
    """Hidden partial, staging and reserve files anywhere under ``folder``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


class FullDisk(io.FileIO):
    """A file on a disk that fills up after a few bytes: write raises ENOSPC, as the OS does."""

    def write(self, data) -> int:
        super().write(bytes(data)[:10])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def full_disk_open(path, mode="r", *args, **kwargs):
    return FullDisk(path, "wb") if "w" in mode else open(path, mode, *args, **kwargs)


# --- 7: resourceconfig.json -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ({"current_host": "algo-1", "hosts": 5}, r"hosts is 5; it must be a list of host names"),
        (
            {"current_host": "algo-1", "hosts": "algo-1"},
            r'hosts is "algo-1"; it must be a list of host names, e\.g\. \{"current_host"',
        ),
        ({"current_host": "algo-1", "hosts": ["algo-1", 2]}, r"it must be a list of host names"),
        ({"current_host": 1, "hosts": ["algo-1"]}, r"current_host is 1; it must be a host name"),
        ({"current_host": "algo-3", "hosts": ["algo-1"]}, r"'algo-3' is not among hosts"),
        ({"current_host": "algo-1", "hosts": ["algo-1", "algo-1"]}, r"algo-1 more than once"),
        ({"hosts": ["algo-1", "algo-2"]}, r"no current_host, so this host cannot tell whether"),
    ],
)
def test_a_malformed_resourceconfig_fails_with_a_failure_file(tmp_path, resources, message):
    base = layout(tmp_path, resources)
    assert training_job.run_sagemaker_job(base) == 1
    first = failure(base).splitlines()[0]
    assert first.startswith("ConfigError: ") and "resourceconfig.json" in first
    assert re.search(message, first), first
    assert not (base / "model").exists() or not any((base / "model").iterdir())


def test_a_single_host_without_current_host_trains(tmp_path):
    base = layout(tmp_path, {"hosts": ["algo-1"]})
    assert training_job.run_sagemaker_job(base) == 0
    assert (base / "model" / "model.json").is_file()


# --- 10: a full disk --------------------------------------------------------------------------


def test_a_full_checkpoint_disk_is_a_user_error_naming_the_path(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "open", full_disk_open, raising=False)
    base = layout(tmp_path)
    assert training_job.run_sagemaker_job(base) == 1
    text = failure(base)
    assert text.startswith(
        f"DiskFullError: no space left on device while writing {base / 'checkpoints'}"
        f"{os.sep}checkpoint-00000001.pt: free space there or give the job a larger volume"
    )
    assert leftovers(base) == []  # the .partial checkpoint is gone, the reserve too
    assert not (base / "model" / "model.json").exists()


def test_a_full_output_disk_removes_the_partial_output(tmp_path, monkeypatch):
    def plot(history, path, *args):
        with FullDisk(path, "wb") as handle:
            handle.write(b"\x89PNG" * 100)

    monkeypatch.setattr(training_job, "plot_history", plot)
    base = layout(tmp_path)
    assert training_job.run_sagemaker_job(base) == 1
    assert "while writing " + str(base / "output" / "data" / "training_curve.png") in failure(base)
    assert sorted(p.name for p in (base / "output" / "data").iterdir()) == [
        "data_report.json",
        "metrics.json",
    ]
    assert leftovers(base) == []


def test_the_failure_file_is_written_from_the_reserved_room(tmp_path, monkeypatch):
    """On a full output disk the reserve is the only room: it is freed first."""
    base = layout(tmp_path, hyperparameters={"num_epoch": "1"})
    reserve = base / "output" / job_process.RESERVE_NAME
    written = job_process._write_text

    def write_text(path, text):
        assert path == base / "output" / "failure"
        if reserve.exists():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written(path, text)

    monkeypatch.setattr(job_process, "_write_text", write_text)
    assert training_job.run_sagemaker_job(base) == 1
    assert failure(base).startswith("ConfigError: unknown hyperparameter 'num_epoch'")
    assert leftovers(base) == []


def test_a_failure_file_that_cannot_be_written_is_not_left_empty(tmp_path, monkeypatch, caplog):
    def write_text(path, text):
        path.write_bytes(b"")  # the OS created the file, then the disk was full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(job_process, "_write_text", write_text)
    base = layout(tmp_path, hyperparameters={"num_epoch": "1"})
    assert training_job.run_sagemaker_job(base) == 1
    assert not (base / "output" / "failure").exists()
    assert "cannot write the failure file" in caplog.text
    assert "unknown hyperparameter 'num_epoch'" in caplog.text  # the reason is still logged


# --- 12: a kill while the model is written ----------------------------------------------------


def test_staging_left_by_a_killed_model_write_is_removed_on_start(tmp_path, caplog):
    base = layout(tmp_path)
    staging = base / "model" / ".mfrec-staging-x1y2"
    staging.mkdir(parents=True)
    (staging / "arrays.npz").write_bytes(b"half a model")
    with caplog.at_level(logging.WARNING):
        assert training_job.run_sagemaker_job(base) == 0
    assert sorted(p.name for p in (base / "model").iterdir()) == ["arrays.npz", "model.json"]
    assert "left by a write that was cut short" in caplog.text
    assert load(base / "model").num_items == 40


def test_a_partial_output_file_left_by_a_kill_is_removed_on_start(tmp_path):
    base = layout(tmp_path)
    partial = base / "output" / "data" / ".training_curve.png.partial.png"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\x89PNG cut")
    assert training_job.run_sagemaker_job(base) == 0
    assert leftovers(base) == []


def test_a_partial_checkpoint_left_by_a_kill_is_removed_on_start(tmp_path):
    base = layout(tmp_path)
    (base / "checkpoints").mkdir()
    (base / "checkpoints" / ".checkpoint-00000001.pt.partial").write_bytes(b"cut short")
    assert training_job.run_sagemaker_job(base) == 0
    names = [p.name for p in (base / "checkpoints").iterdir()]
    assert names and all(re.fullmatch(r"checkpoint-\d{8}\.pt", name) for name in names), names


# --- 15: num_negatives against the catalogue --------------------------------------------------


def test_num_negatives_above_the_catalogue_is_refused_like_other_ranges(tmp_path):
    base = layout(tmp_path, hyperparameters={**QUICK, "num_negatives": "1048576"})
    assert training_job.run_sagemaker_job(base) == 1
    assert failure(base).startswith(
        "ConfigError: num_negatives=1048576 is out of range for this data's 40 items; allowed: "
        "auto or integers 1 to 40 (the number of items)"
    )
