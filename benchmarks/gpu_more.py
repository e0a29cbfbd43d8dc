"""Three GPU checks other issues owe; ``scripts/gpu-check`` runs them by ``benchmarks.gpu_checks``.

- ``ials-iteration`` (issue 12 item 7): seconds per iALS iteration on the device at each of
  ``--factors`` (64 and 256) on the whole synthetic dataset, the data path and the timed call of
  ``benchmarks.speed_process --part iteration`` (:func:`~benchmarks.speed_process.prepared_full`,
  :class:`~mfrec.train.ials.IALSTrainer` with the default ``cg`` solver, each ``run_epoch()``
  timed after the trainer is built, the device synchronised around it). Anchor: implicit's
  published 0.30 s per iteration on MovieLens 20M at 256 factors on an A6000.
- ``processes`` (issue 14): the plain one-device job (one visible GPU, on a GPU) against
  ``mfrec train --processes 1`` on the same data and seed, for ``model=ials`` and ``model=sgd``,
  and ``--processes 2`` where the host has 2 GPUs (always on the CPU: gloo). Each run is a
  ``mfrec train`` process; reported: exit code, wall seconds, VALID NDCG@10 (``model.json``) and
  the largest difference of the saved embeddings from the plain job's. The plain job makes no
  process group (one process); ``--processes 1`` runs with ``MFREC_PROCESS_GROUP=always``, so it
  joins a group of world size 1 and every collective of a distributed job runs (NCCL on one GPU,
  gloo on the CPU); its log's join line gives the backend its verdict names (no join: FAILED).
- ``sequence`` (issue 19): the sequence model's training throughput on the device (sequences,
  i.e. windows of ``max_history`` target positions, per second) over ``--steps`` steps after
  ``--warmup-steps``, its defaults (``batch_size=auto``), on FIT of the synthetic dataset.

Each returns a dict that ``benchmarks.gpu_checks`` writes as JSON; each also prints ``summary:``
lines (``processes``: one verdict per comparison), which the script copies into ``summary.txt``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import speed, speed_process

IALS_ANCHOR = (
    "implicit (published): 0.30 s/iteration, ML-20M (20M interactions), 256 factors, A6000"
)
# Fixed settings, so no run searches (model=auto, the iALS probes) and every run trains alike.
PROCESS_SETTINGS = {
    "ials": "model=ials num_epochs=3 regularization=0.03 unobserved_weight=0.27",
    "sgd": "model=sgd num_epochs=3 batch_size=1024",
}
COMMON_SETTINGS = "recency_min_weight=1 refit=false early_stopping_patience=0 seed=7"
IALS_TOLERANCE = 1e-5  # issue 14: iALS over ranks equals one process up to reduction order
SGD_TOLERANCE = 0.03  # issue 14's test: SGD quality within 3%
GROUP_ENV = "MFREC_PROCESS_GROUP"  # mfrec.train.distributed.PROCESS_GROUP_ENV


def _peak_mib(device) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def ials_iteration(args, device) -> dict:
    """Seconds per iALS iteration at each of ``args.factors`` (comma-separated)."""
    import torch

    from mfrec.train.ials import IALSParams

    started = time.perf_counter()
    data = speed_process.load_full(speed_process.prepared_full(args.size, args))
    result = {
        "size": args.size, "device": str(device), "interactions": len(data),
        "num_users": data.num_users, "num_items": data.num_items,
        "load_seconds": time.perf_counter() - started, "anchor": IALS_ANCHOR, "factors": {},
    }  # fmt: skip
    for factors in (int(text) for text in args.factors.split(",")):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        params = IALSParams(embedding_dim=factors)
        timed = speed_process.time_ials(data, params, args.iterations, device)
        setup, times = timed["setup_seconds"], timed["iteration_seconds"]
        result["factors"][str(factors)] = {
            "setup_seconds": setup, "iteration_seconds": times, "losses": timed["losses"],
            "median_seconds": statistics.median(times), "min_seconds": min(times),
            "peak_mib": _peak_mib(device),
        }  # fmt: skip
        print(
            f"summary: iALS {factors} factors on {args.size} ({len(data):,} interactions, "
            f"{device}): {statistics.median(times):.3f} s/iteration median of {len(times)} "
            f"[min {min(times):.3f}], setup {setup:.1f} s; {IALS_ANCHOR}",
            flush=True,
        )
    return result


def sequence(args, device) -> dict:
    """Sequences per second of the sequence model's training steps."""
    from mfrec.train.config import TrainConfig
    from mfrec.train.sequence_trainer import SequenceTrainer

    fit, _valid = speed.load_prepared(speed.prepare(args.size, args))
    config = TrainConfig.from_hyperparameters({"model": "sequence", "recency_min_weight": "1"})
    started = time.perf_counter()
    trainer = SequenceTrainer(fit, config, device, horizon_epochs=config.num_epochs)
    speed_process.synchronize(device)
    setup = time.perf_counter() - started
    done, sequences = [0], [0]
    size, windows = trainer.sequences_per_step, len(trainer.windows)

    def on_batch() -> None:  # an epoch's last step may take fewer windows
        done[0] += 1
        sequences[0] += min(size, windows - (trainer.batch - 1) * size)

    def run(steps: int) -> float:
        """Seconds of ``steps`` more steps (across epochs when one ends first)."""
        target = done[0] + steps
        started = time.perf_counter()
        while done[0] < target:
            trainer.run_epoch(should_stop=lambda: done[0] >= target, on_batch=on_batch)
        speed_process.synchronize(device)
        return time.perf_counter() - started

    run(args.warmup_steps)  # kernels chosen, caches filled
    sequences[0] = 0
    seconds = run(args.steps)
    sequences = sequences[0]
    print(f"summary: sequence model on FIT of {args.size} ({device}): {sequences / seconds:,.0f} "
          f"sequences/s over {args.steps} steps of {size} sequences x {trainer.config.max_history}"
          f" positions, {trainer.num_negatives} negatives, d={trainer.config.embedding_dim}",
          flush=True)  # fmt: skip
    return {
        "size": args.size, "device": str(device), "fit_interactions": len(fit),
        "windows": windows, "steps_per_epoch": trainer.steps_per_epoch,
        "batch_size": trainer.config.batch_size, "max_history": trainer.config.max_history,
        "sequences_per_step": trainer.sequences_per_step, "num_negatives": trainer.num_negatives,
        "embedding_dim": trainer.config.embedding_dim, "setup_seconds": setup,
        "warmup_steps": args.warmup_steps, "steps": args.steps, "sequences": sequences,
        "seconds": seconds,
        "sequences_per_second": sequences / seconds,
        "target_positions_per_second": sequences * trainer.config.max_history / seconds,
        "peak_mib": _peak_mib(device),
    }  # fmt: skip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _train(data: str, work: Path, name: str, settings: str, extra: list[str], env: dict, timeout):
    """One ``mfrec train`` process: exit code, seconds, VALID NDCG@10, the process group its
    log says it joined (``rank 0 of 1, nccl``; None: none) and the model folder."""
    model_dir, log = work / name, work / f"{name}.log"
    command = [sys.executable, "-m", "mfrec", "train", "--data", data, "--model-dir",
               str(model_dir), "--output-dir", str(work / f"{name}-output"), *extra,
               "--set", *settings.split()]  # fmt: skip
    env = {**os.environ, **env, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    env.setdefault("MFREC_COLLECTIVE_TIMEOUT_SECONDS", "120")
    started = time.perf_counter()
    with open(log, "w") as sink:
        try:
            code = subprocess.run(command, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                  timeout=timeout).returncode  # fmt: skip
        except subprocess.TimeoutExpired:
            code = "timeout"
    found = {"exit": code, "seconds": time.perf_counter() - started, "command": command[1:]}
    found["env"] = env_set = {k: v for k, v in env.items() if k == GROUP_ENV}
    found["process_group"] = _joined(log.read_text())
    if env_set:
        found["expects_group"] = True
    if code == 0:
        metrics = json.loads((model_dir / "model.json").read_text())["metrics"]
        found["valid_ndcg@10"] = metrics.get("mfrec", {}).get("ndcg@10")
    else:
        found["log_tail"] = log.read_text()[-1500:]
    return found


def _joined(log: str) -> str | None:
    """``rank R of W, BACKEND`` from the first process group join line of a job's log."""
    found = re.search(r"joining the process group at \S+ as (rank \d+ of \d+) \((\w+),", log)
    return f"{found[1]}, {found[2]}" if found else None


def _difference(model_dir: Path, plain_dir: Path) -> float:
    """Largest absolute difference of the user and item embeddings of two saved models."""
    import numpy as np

    from mfrec.train import artifact

    one, other = artifact.load(model_dir), artifact.load(plain_dir)
    if not (np.array_equal(one.user_ids, other.user_ids)
            and np.array_equal(one.item_ids, other.item_ids)):  # fmt: skip
        return float("inf")
    return float(max(np.abs(one.user_embeddings - other.user_embeddings).max(),
                     np.abs(one.item_embeddings - other.item_embeddings).max()))  # fmt: skip


def _verdict(model: str, name: str, run: dict, plain: dict) -> str:
    head = f"processes {model} {name}: exit {run['exit']} in {run['seconds']:.1f} s"
    if run.get("expects_group"):
        head += f" with {GROUP_ENV}=always (process group: {run['process_group'] or 'none'})"
    head += f" (plain: exit {plain['exit']} in {plain['seconds']:.1f} s)"
    if run["exit"] != 0 or plain["exit"] != 0:
        return head + " -> FAILED (see processes.json)"
    if run.get("expects_group") and not run.get("process_group"):
        return head + " -> FAILED (the job joined no process group; see processes.json)"
    if model == "ials":
        agree = run["max_abs_embedding_difference"] <= IALS_TOLERANCE
        detail = f"max |embedding difference| {run['max_abs_embedding_difference']:.2e}"
    else:
        ratio = run["valid_ndcg@10"] / max(plain["valid_ndcg@10"], 1e-12)
        agree = abs(ratio - 1) <= SGD_TOLERANCE
        detail = f"VALID NDCG@10 {run['valid_ndcg@10']:.4f} vs {plain['valid_ndcg@10']:.4f}"
    return f"{head}; {detail} -> {'AGREE' if agree else 'DIFFER'}"


def processes(args, device) -> dict:
    """The plain job against ``--processes 1`` (and 2) for each of ``args.models``."""
    import torch

    from mfrec.train.ingest.datasets import default_dataset_path

    data = args.data or str(default_dataset_path())
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    common = f"{COMMON_SETTINGS} embedding_dim={args.embedding_dim}"
    if device.type == "cpu":
        common += " device=cpu"
    # On a GPU the plain job sees one GPU (with several, its default would be one process each).
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
    plain_env = {"CUDA_VISIBLE_DEVICES": first} if gpus else {}
    # One process in a process group of its own: the collectives of a distributed job, on NCCL
    # when the host has a single GPU (mfrec.train.distributed.PROCESS_GROUP_ENV).
    variants = [("processes-1", ["--processes", "1"], {GROUP_ENV: "always"})]
    if gpus >= 2 or device.type == "cpu":
        variants.append(("processes-2", ["--processes", "2"], {}))
    result = {"device": str(device), "gpus": gpus, "data": data, "models": {}, "verdicts": []}
    with tempfile.TemporaryDirectory(prefix="mfrec-processes-") as folder:
        for model in args.models.split(","):
            settings, work = f"{PROCESS_SETTINGS[model]} {common}", Path(folder) / model
            work.mkdir()
            runs = {"plain": _train(data, work, "plain", settings, [], plain_env, args.run_timeout)}
            for name, extra, env in variants:
                run = runs[name] = _train(data, work, name, settings, extra, env, args.run_timeout)
                if run["exit"] == 0 and runs["plain"]["exit"] == 0:
                    run["max_abs_embedding_difference"] = _difference(work / name, work / "plain")
                verdict = _verdict(model, name, run, runs["plain"])
                result["verdicts"].append(verdict)
                print("summary:", verdict, flush=True)
            result["models"][model] = {"settings": settings, "runs": runs}
    if device.type == "cuda" and gpus < 2:
        note = "processes-2: SKIPPED (1 GPU; NCCL needs one GPU per process)"
        result["verdicts"].append(note)
        print("summary:", note, flush=True)
    return result
