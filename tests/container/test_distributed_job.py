"""The training job on several processes and hosts: real ``python -m mfrec train`` processes
joined by gloo on the loopback (``MASTER_ADDR=127.0.0.1``, a free port), on small data, one
thread each. Every wait is bounded: a process that hangs fails the test instead."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from distributed_ranks import free_port

from mfrec.sagemaker import training_job_request
from mfrec.train.artifact import load
from mfrec.train.distributed import PROCESS_GROUP_ENV
from mfrec.train.errors import ConfigError
from mfrec.training_job import run_local_job

WAIT_SECONDS = 180  # far beyond a run here: reaching it means a hang
HYPERPARAMETERS = {"embedding_dim": "8", "device": "cpu", "seed": "3"}


def interactions_csv(users: range, num_items: int = 40, per_user: int = 20) -> str:
    """Users in 4 taste blocks; ``users`` picks which ones (so two shards differ)."""
    rng = np.random.default_rng(users.start)
    lines = ["user_id,item_id,timestamp"]
    for user in users:
        block = (user % 4) * (num_items // 4)
        items = np.where(
            rng.random(per_user) < 0.8,
            block + rng.integers(0, num_items // 4, per_user),
            rng.integers(0, num_items, per_user),
        )
        lines += [
            f"u{user},i{item},{1_600_000_000 + 1000 * user + t}" for t, item in enumerate(items)
        ]
    return "\n".join(lines) + "\n"


def environment(port: int) -> dict:
    return dict(
        os.environ,
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        MFREC_COLLECTIVE_TIMEOUT_SECONDS="60",
        OMP_NUM_THREADS="1",  # torch's threads: the machine's cores are shared
    )


def start(arguments: list[str], env: dict, log: Path) -> subprocess.Popen:
    with log.open("w") as handle:  # the child holds its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "mfrec", *arguments],
            env=env,
            stdout=subprocess.PIPE,
            stderr=handle,
            text=True,
        )


def wait_for_line(process: subprocess.Popen, prefix: str) -> None:
    """Read the metric lines until one starts with ``prefix`` (the process must print it)."""
    for line in process.stdout:
        if line.startswith(prefix):
            return
    pytest.fail(f"the job ended without printing a line starting with {prefix!r}")


def finish(process: subprocess.Popen) -> int:
    try:
        process.communicate(timeout=WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("a training process hung")
    return process.returncode


# --- two SageMaker hosts, each with its shard ---------------------------------------------------


def host_layout(base: Path, host: str, users: range) -> Path:
    config = base / "input" / "config"
    config.mkdir(parents=True)
    hyperparameters = {**HYPERPARAMETERS, "model": "ials", "num_epochs": "3"}
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    channel = {"TrainingInputMode": "File", "S3DistributionType": "ShardedByS3Key"}
    (config / "inputdataconfig.json").write_text(json.dumps({"training": channel}))
    resources = {"current_host": host, "hosts": ["algo-1", "algo-2"]}
    (config / "resourceconfig.json").write_text(json.dumps(resources))
    folder = base / "input" / "data" / "training"
    folder.mkdir(parents=True)
    (folder / f"part-{host}.csv").write_text(interactions_csv(users))
    return base


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory):
    root = tmp_path_factory.mktemp("hosts")
    shards = {"algo-1": range(0, 40), "algo-2": range(30, 70)}  # users 30-39 in both
    env = environment(free_port())
    runs = {}
    for host, users in shards.items():
        base = host_layout(root / host, host, users)
        runs[host] = (base, start(["train", "--base-dir", str(base)], env, root / f"{host}.log"))
    codes = {host: finish(process) for host, (_, process) in runs.items()}
    logs = {host: (root / f"{host}.log").read_text() for host in shards}
    return {host: (runs[host][0], codes[host], logs[host]) for host in shards}


def test_two_hosts_both_exit_0_and_only_algo_1_writes_a_model(two_hosts):
    (first, first_code, first_log), (second, second_code, _) = two_hosts.values()
    assert (first_code, second_code) == (0, 0), first_log[-3000:]
    assert sorted(p.name for p in (first / "model").iterdir()) == ["arrays.npz", "model.json"]
    assert not (second / "model").exists() or not any((second / "model").iterdir())
    assert (first / "output" / "data" / "metrics.json").exists()
    assert not (second / "output" / "data").exists()
    assert "world size 2" in first_log and "rank 0/2:" in first_log


def test_sharded_channels_give_both_hosts_the_same_id_maps(two_hosts):
    logs = [log for _, _, log in two_hosts.values()]
    gathered = [
        next(line for line in log.splitlines() if "gathered 2 shards" in line) for log in logs
    ]
    assert gathered[0].split("gathered")[1] == gathered[1].split("gathered")[1]
    model = load(two_hosts["algo-1"][0] / "model")
    assert sorted(model.user_ids) == sorted(f"u{user}" for user in range(70))


# --- two processes on one host --------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "interactions.csv"
    path.write_text(interactions_csv(range(60)))
    return path


def local_run(data: Path, folder: Path, epochs: int, **settings) -> list[str]:
    hyperparameters = {**HYPERPARAMETERS, "model": "sgd", "loss": "bpr", "num_epochs": str(epochs)}
    hyperparameters.update(validation_fraction="0", **settings)
    return [
        "train", "--data", str(data), "--model-dir", str(folder / "model"),
        "--output-dir", str(folder / "out"), "--checkpoint-dir", str(folder / "ckpt"),
        "--processes", "2", "--set", *(f"{k}={v}" for k, v in hyperparameters.items()),
    ]  # fmt: skip


def rank_pid(launcher: int, rank: int) -> int:
    """The process the launcher started for ``rank`` (its environment says RANK=...)."""
    for pid in Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split():
        variables = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in variables:
            return int(pid)
    pytest.fail(f"no process of rank {rank} under the launcher")


def test_a_rank_killed_mid_epoch_fails_the_other_in_bounded_time(tmp_path, data_csv):
    launcher = start(local_run(data_csv, tmp_path, 500), environment(free_port()), tmp_path / "log")
    wait_for_line(launcher, "epoch=1;")
    os.kill(rank_pid(launcher.pid, 1), signal.SIGKILL)
    assert finish(launcher) == 1
    failure = (tmp_path / "out" / "failure").read_text()
    assert failure.startswith("PeerFailedError:"), failure
    assert not (tmp_path / "model").exists()


def test_resume_after_sigterm_with_two_processes_equals_uninterrupted(tmp_path, data_csv):
    run = local_run(data_csv, tmp_path / "whole", 30)
    whole = start(run, environment(free_port()), tmp_path / "whole.log")
    assert finish(whole) == 0
    run = local_run(data_csv, tmp_path / "cut", 30)
    stopped = start(run, environment(free_port()), tmp_path / "cut.log")
    wait_for_line(stopped, "epoch=2;")
    stopped.send_signal(signal.SIGTERM)  # to the launcher: it passes it on
    assert finish(stopped) == 0
    assert "stopped by SIGTERM before the end" in (tmp_path / "cut.log").read_text()
    resumed = start(run, environment(free_port()), tmp_path / "resumed.log")
    assert finish(resumed) == 0
    assert "resumed" in (tmp_path / "resumed.log").read_text()
    expected, found = load(tmp_path / "whole" / "model"), load(tmp_path / "cut" / "model")
    np.testing.assert_array_equal(found.user_embeddings, expected.user_embeddings)
    np.testing.assert_array_equal(found.item_embeddings, expected.item_embeddings)


# --- the request ------------------------------------------------------------------------------


def test_a_training_job_request_on_two_instances():
    request = training_job_request(
        "mfrec-2", "image:latest", "arn:aws:iam::1:role/r", "s3://b/in/", "s3://b/out/",
        instance_count=2,
    )  # fmt: skip
    assert request["ResourceConfig"]["InstanceCount"] == 2
    with pytest.raises(ConfigError, match="instance_count=0 must be an integer >= 1"):
        training_job_request(
            "j", "i", "arn:aws:iam::1:role/r", "s3://b/", "s3://b/", instance_count=0
        )


# --- one process in a process group of its own (MFREC_PROCESS_GROUP=always) --------------------


def train_alone(data: Path, folder: Path, model: str, monkeypatch, switch: str | None) -> int:
    """``mfrec train --processes 1`` in this process, with the switch set or not."""
    if switch is None:
        monkeypatch.delenv(PROCESS_GROUP_ENV, raising=False)
    else:
        monkeypatch.setenv(PROCESS_GROUP_ENV, switch)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    hyperparameters = {**HYPERPARAMETERS, "model": model, "num_epochs": "3"}
    hyperparameters.update(validation_fraction="0", loss="bpr")
    return run_local_job(
        data, folder / "model", output_dir=folder / "out", hyperparameters=hyperparameters,
        out=io.StringIO(), processes=1,
    )  # fmt: skip


@pytest.mark.parametrize("model", ["ials", "sgd"])
def test_one_process_in_a_group_of_its_own_trains_the_same_model(
    tmp_path, data_csv, monkeypatch, caplog, model
):
    caplog.set_level(logging.INFO)
    assert train_alone(data_csv, tmp_path / "plain", model, monkeypatch, None) == 0
    assert "joining the process group" not in caplog.text
    assert train_alone(data_csv, tmp_path / "group", model, monkeypatch, "always") == 0
    assert "as rank 0 of 1 (gloo" in caplog.text and "rank 0/1: " in caplog.text
    assert "distributed training: world size 1" in caplog.text
    plain, group = load(tmp_path / "plain" / "model"), load(tmp_path / "group" / "model")
    # Bit-identical: a collective over one rank returns its input unchanged.
    np.testing.assert_array_equal(group.user_embeddings, plain.user_embeddings)
    np.testing.assert_array_equal(group.item_embeddings, plain.item_embeddings)


def test_a_bad_process_group_switch_fails_the_job_in_one_line(tmp_path, data_csv, monkeypatch):
    assert train_alone(data_csv, tmp_path, "sgd", monkeypatch, "sometimes") == 1
    failure = (tmp_path / "out" / "failure").read_text().strip()
    assert failure.startswith("ConfigError: MFREC_PROCESS_GROUP='sometimes' must be auto")
    assert "\n" not in failure and not (tmp_path / "model").exists()
