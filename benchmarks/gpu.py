"""Benchmark T on a CUDA GPU: throughput, memory bandwidth, where the time goes, and the peers.

Per synthetic size (default 10M and 100M interactions, made by mfrec's own generator):

- **throughput**: mfrec's training loop at ``embedding_dim`` 64 (otherwise its defaults): one
  warm-up epoch, then the median of ``--epochs`` timed epochs; interactions per second =
  FIT interactions / epoch seconds (target ≥ 20M/s on one H100);
- **memory bandwidth**: the bytes an epoch must move (estimated, see :func:`bytes_per_step`)
  per epoch second, against a measured device-to-device copy (read + write bytes per second);
- **breakdown**: ``torch.profiler`` over a slice of an epoch, device time per phase: shuffle,
  negative sampling, forward (scores and loss), backward, optimizer;
- **peers, as in benchmarks.speed**: mfrec (defaults with embedding_dim 64) and the naive loop
  on the GPU, implicit's ALS on all CPU cores, each in its own process: epoch time, time to
  the VALID plateau, peak RSS, plus peak GPU memory for the profile run.

    python -m benchmarks.gpu                    # 10M and 100M (needs a CUDA device)
    python -m benchmarks.gpu --sizes 10m        # one size per call fits a 10-minute slot

Without CUDA it stops at once with a message saying so (``--allow-cpu`` runs the same code on
the CPU, for testing this script).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from pathlib import Path

from benchmarks import common, speed

logger = logging.getLogger(__name__)

TARGET_INTERACTIONS_PER_SECOND = 20e6
PHASES = ("shuffle", "sampling", "forward", "backward", "optimizer")


def require_device(allow_cpu: bool):
    """CUDA device 0, or exit with a message saying what is missing."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    if allow_cpu:
        return torch.device("cpu")
    raise SystemExit(
        "benchmarks.gpu needs a CUDA GPU: torch.cuda.is_available() is False here (torch "
        f"{torch.__version__}, CUDA build {torch.version.cuda}). Run it on a CUDA machine with a "
        "CUDA build of torch 2.13.0; for CPU numbers run `python -m benchmarks.speed`."
    )


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def copy_bandwidth(device, megabytes: int = 1024, repeats: int = 10) -> float:
    """Measured copy bandwidth in GB/s: (bytes read + bytes written) / seconds."""
    import torch

    source = torch.empty(megabytes * 2**20 // 4, dtype=torch.float32, device=device)
    target = torch.empty_like(source)
    target.copy_(source)
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        target.copy_(source)
    synchronize(device)
    seconds = (time.perf_counter() - started) / repeats
    return 2 * source.numel() * 4 / seconds / 1e9


def bytes_per_step(trainer, batch_size: int) -> dict:
    """An estimate of the memory traffic of one training step, in bytes.

    - every trainable table, once per step: the dense gradient is allocated and zero-filled
      (1 write), Adam reads parameter, gradient and two moments and writes three (7): 8 passes
      when gradients are dense; with sparse gradients only the rows touched (counted below);
    - the rows a batch gathers (users, positives, negatives) and their biases: read in the
      forward pass, accumulated into the gradient in the backward pass (read + write).
    """
    config, model = trainer.config, trainer.model
    dim = model.user_embeddings.shape[1]
    row = (dim + 1) * 4  # embedding row and its bias, float32
    negatives = config.negatives if trainer.shared else batch_size * config.negatives
    gathered = (2 * batch_size + negatives) * row * 3
    dense = sum(p.numel() * 4 for p in model.parameters() if p.requires_grad) * 8
    return {"gathered": gathered, "dense_tables": dense, "total": gathered + dense}


def phase_of(name: str) -> str:
    """The phase of a top-level profiler event (a CPU op or a record_function range)."""
    lowered = name.lower()
    if lowered.startswith("optimizer.") or "adam" in lowered:
        return "optimizer"
    if lowered.startswith("autograd::engine") or "backward" in lowered:
        return "backward"
    if "randperm" in lowered:
        return "shuffle"
    if any(word in lowered for word in ("randint", "multinomial", "searchsorted", "uniform_")):
        return "sampling"
    if "zero_grad" in lowered:
        return "optimizer"
    return "forward"


def breakdown(trainer, device, steps: int) -> dict:
    """Share of device time (CPU time on the CPU) per phase over ``steps`` training steps."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    done = {"steps": 0}

    def stop() -> bool:
        return done["steps"] >= steps

    def count() -> None:
        done["steps"] += 1

    with profile(activities=activities) as prof:
        trainer.run_epoch(should_stop=stop, on_batch=count)
        synchronize(device)
    totals = dict.fromkeys(PHASES, 0.0)
    for event in prof.events():
        if event.cpu_parent is not None:
            continue  # counted in its top-level parent
        if device.type == "cuda":
            spent = getattr(event, "device_time_total", None) or event.cuda_time_total
        else:
            spent = event.cpu_time_total
        totals[phase_of(event.name)] += spent
    whole = sum(totals.values()) or 1.0
    return {
        "steps": done["steps"],
        "microseconds_per_step": {k: v / max(1, done["steps"]) for k, v in totals.items()},
        "share": {k: v / whole for k, v in totals.items()},
    }


def profile_worker(args) -> int:
    """Throughput, bandwidth and breakdown of mfrec's loop on one dataset (its own process)."""
    import torch

    from mfrec.train.config import TrainConfig
    from mfrec.train.loop import Trainer

    device = require_device(args.allow_cpu)
    fit, _valid = speed.load_prepared(speed.prepare(args.size, args))
    hyperparameters = {"embedding_dim": str(args.embedding_dim), "device": device.type}
    hyperparameters.update(dict(item.split("=", 1) for item in args.mfrec_set))
    config = TrainConfig.from_hyperparameters(hyperparameters)
    trainer = Trainer(fit, config, device, horizon_epochs=config.num_epochs)
    started = time.perf_counter()
    trainer.run_epoch()  # warm-up: kernels, allocator, caches
    warmup = time.perf_counter() - started
    times = []
    for _ in range(args.epochs):
        started = time.perf_counter()
        trainer.run_epoch()  # ends with .item(): the device has finished the epoch
        synchronize(device)
        times.append(time.perf_counter() - started)
    epoch_seconds = statistics.median(times)
    traffic = bytes_per_step(trainer, config.batch_size)
    epoch_bytes = traffic["total"] * trainer.steps_per_epoch
    copy = copy_bandwidth(device, megabytes=args.copy_megabytes)
    result = {
        "size": args.size,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "fit_interactions": len(fit),
        "num_users": fit.num_users,
        "num_items": fit.num_items,
        "config": config.to_dict(),
        "warmup_epoch_seconds": warmup,
        "epoch_seconds": epoch_seconds,
        "epoch_seconds_all": times,
        "interactions_per_second": len(fit) / epoch_seconds,
        "bytes_per_step": traffic,
        "achieved_gb_per_second": epoch_bytes / epoch_seconds / 1e9,
        "copy_gb_per_second": copy,
        "breakdown": breakdown(trainer, device, args.profile_steps),
        "peak_rss_mib": common.peak_rss_mib(),
        "peak_device_memory_mib": (
            torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        ),
    }
    result["bandwidth_share_of_copy"] = result["achieved_gb_per_second"] / copy
    Path(args.result_file).write_text(json.dumps(result, default=float))
    return 0


def tables(results: dict, args) -> list[common.Table]:
    throughput = common.Table(
        title=f"T (GPU) — mfrec throughput at embedding_dim {args.embedding_dim}",
        columns=[
            "dataset",
            "device",
            "FIT interactions",
            "s / epoch",
            "interactions / s (target ≥ 20M)",
            "achieved GB/s (estimate)",
            "copy GB/s",
            "share of copy",
            "peak GPU MiB",
        ],
    )
    phases = common.Table(
        title="T (GPU) — where an mfrec training step spends its device time",
        columns=["dataset", *PHASES, "µs / step"],
    )
    for size, found in results.items():
        prof = found["profile"]
        rate = prof["interactions_per_second"]
        met = "met" if rate >= TARGET_INTERACTIONS_PER_SECOND else "NOT met"
        throughput.rows.append(
            [
                size,
                prof["device"],
                prof["fit_interactions"],
                prof["epoch_seconds"],
                f"{rate / 1e6:.1f}M ({met})",
                prof["achieved_gb_per_second"],
                prof["copy_gb_per_second"],
                prof["bandwidth_share_of_copy"],
                prof["peak_device_memory_mib"],
            ]
        )
        share = prof["breakdown"]["share"]
        per_step = sum(prof["breakdown"]["microseconds_per_step"].values())
        phases.rows.append([size, *(f"{share[p]:.0%}" for p in PHASES), per_step])
    peers = {size: found["speed"] for size, found in results.items() if found.get("speed")}
    return [throughput, phases, *(speed.tables(peers, args) if peers else [])]


def parse_args(argv):
    parser = speed.build_parser("python -m benchmarks.gpu", __doc__)
    parser.set_defaults(sizes="10m,100m", device="cuda", threads=os.cpu_count() or 1)
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after a warm-up")
    parser.add_argument("--profile-steps", type=int, default=50)
    parser.add_argument("--copy-megabytes", type=int, default=1024)
    parser.add_argument("--skip-peers", action="store_true", help="throughput and profile only")
    parser.add_argument("--allow-cpu", action="store_true", help="run on the CPU (tests only)")
    parser.add_argument("--profile-worker", action="store_true", help=argparse.SUPPRESS)
    return speed.check_args(parser, parser.parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.profile_worker:
        return profile_worker(args)
    if args.worker:
        return speed.worker(args)
    device = require_device(args.allow_cpu)
    args.device = device.type
    args.mfrec_set = [f"embedding_dim={args.embedding_dim}", *args.mfrec_set]
    header = common.run_header("gpu", "benchmarks.gpu", argv)
    results = {}
    for size in args.sizes.split(","):
        speed.prepare(size, args)
        passed = ["--size", size, *speed.shared_args(args), "--profile-worker"]
        passed += ["--embedding-dim", str(args.embedding_dim), "--epochs", str(args.epochs)]
        passed += ["--profile-steps", str(args.profile_steps)]
        passed += ["--copy-megabytes", str(args.copy_megabytes)]
        if args.allow_cpu:
            passed.append("--allow-cpu")
        logger.info("profile on %s ...", size)
        profile = common.run_worker(
            "benchmarks.gpu", passed, timeout=args.timeout, in_process=args.in_process
        )
        found = {"profile": profile}
        if not args.skip_peers:
            found["speed"] = speed.run_systems(size, args, module="benchmarks.gpu")
        results[size] = found
    notes = [
        f"mfrec and the naive loop on {device.type}; implicit's ALS on {args.threads} CPU threads",
        "achieved GB/s = estimated bytes per step (benchmarks.gpu.bytes_per_step) × steps / epoch "
        "seconds; copy GB/s = (read + write) bytes of a device-to-device copy per second",
    ]
    return common.write_and_print(
        header, tables(results, args), {"datasets": results}, notes, args.out_dir
    )


if __name__ == "__main__":
    raise SystemExit(main())
