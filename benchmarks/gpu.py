"""Benchmark T on a CUDA GPU: throughput, kernels and bytes per step, where the time goes.

Per synthetic size (default 10M interactions, made by mfrec's own generator):

- **throughput**: mfrec's training loop at ``embedding_dim`` 64 (otherwise its defaults): one
  warm-up epoch, then the median of ``--epochs`` timed epochs, or, with ``--steps N``, N timed
  steps after a short warm-up (so that a 100M run fits one 10-minute device call); interactions
  per second = interactions trained / seconds (target ≥ 20M/s on one H100/H200);
- **kernels per step**: ATen ops per step from ``torch.profiler`` (:func:`benchmarks.stepcost.
  count_ops`; target ≤ 40);
- **memory bandwidth**: the bytes a step really touches (:func:`benchmarks.stepcost.
  bytes_per_step`) per second, against the card's peak (H100 SXM 3.35 TB/s, H200 4.8 TB/s)
  and a measured device-to-device copy (read + write bytes per second);
- **wall vs busy**: wall-clock microseconds per step against the device's busy time (the sum
  of its kernels' times; on the CPU, of the ops' self times): a launch-bound step has busy far
  below wall;
- **breakdown**: device time per phase (sampling, forward, backward, optimizer) over steps
  profiled after the epoch's shuffle; the shuffle (one ``randperm`` per epoch) is timed on its
  own and shown per step, amortised over the epoch;
- **peers, as in benchmarks.speed**: mfrec (defaults with embedding_dim 64) and the naive loop
  on the GPU, implicit's ALS on all CPU cores, each in its own process.

    python -m benchmarks.gpu                                  # 10M (needs a CUDA device)
    python -m benchmarks.gpu --sizes 100m --steps 300 --skip-peers   # fits a 10-minute call

Without CUDA it stops at once with a message saying so; ``--allow-cpu`` runs the same code on
the CPU (always on the CPU, even where a GPU is present: for testing this script).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from pathlib import Path

from benchmarks import common, speed, stepcost

logger = logging.getLogger(__name__)

TARGET_INTERACTIONS_PER_SECOND = 20e6
TARGET_KERNELS_PER_STEP = 40
PHASES = ("shuffle", "sampling", "forward", "backward", "optimizer")


def require_device(allow_cpu: bool):
    """The CPU with ``allow_cpu``, else CUDA device 0, or exit saying what is missing."""
    import torch

    if allow_cpu:
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
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


def step_bytes(trainer) -> dict:
    """:func:`benchmarks.stepcost.bytes_per_step` of ``trainer``'s configuration."""
    config, model = trainer.config, trainer.model
    bias_rows = sum(p.numel() for p in model.bias_parameters())
    return stepcost.bytes_per_step(
        trainer.step_rows,
        config.negatives,
        trainer.shared,
        config.embedding_dim,
        bias_rows,
        popularity=config.negative_sampling == "popularity",
    )


def phase_of(name: str) -> str:
    """The phase of a top-level profiler event (a CPU op or a record_function range)."""
    lowered = name.lower()
    if lowered.startswith("optimizer.") or "adam" in lowered or "zero_grad" in lowered:
        return "optimizer"
    if lowered.startswith("autograd::engine") or "backward" in lowered:
        return "backward"
    if "randperm" in lowered:
        return "shuffle"
    if any(word in lowered for word in ("randint", "aten::rand", "uniform_", "multinomial")):
        return "sampling"
    return "forward"


def _transparent(name: str) -> bool:
    """Ranges that wrap a whole step: their children are the phases."""
    return name.startswith("ProfilerStep") or name == "Trainer.step"


def run_steps(trainer, count: int, on_batch=None) -> None:
    """Train ``count`` steps, across epoch ends (a trainer stopped mid-epoch resumes there)."""
    done = {"steps": 0}

    def batch() -> None:
        done["steps"] += 1
        if on_batch is not None:
            on_batch()

    while done["steps"] < count:
        trainer.run_epoch(should_stop=lambda: done["steps"] >= count, on_batch=batch)


def shuffle_seconds(trainer, device) -> float:
    """Seconds of one epoch's shuffle (a randperm of the interactions) on ``device``."""
    import torch

    generator = torch.Generator(device).manual_seed(0)
    torch.randperm(len(trainer.users), generator=generator, device=device)
    synchronize(device)
    started = time.perf_counter()
    torch.randperm(len(trainer.users), generator=generator, device=device)
    synchronize(device)
    return time.perf_counter() - started


def breakdown(trainer, device, steps: int) -> dict:
    """Phases, kernels, wall and busy time over ``steps`` steps, profiled after two unprofiled
    steps (so that an epoch's shuffle and first-call costs stay out)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile, schedule

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    clock = {}

    with profile(
        activities=activities, record_shapes=True, schedule=schedule(wait=1, warmup=1, active=steps)
    ) as prof:

        def on_batch() -> None:
            prof.step()
            if prof.step_num == 2:
                synchronize(device)
                clock["start"] = time.perf_counter()

        run_steps(trainer, steps + 2, on_batch)
        synchronize(device)
        clock["end"] = time.perf_counter()
    events = prof.events()
    totals = dict.fromkeys(PHASES, 0.0)
    busy = 0.0
    for event in events:
        if cuda and event.device_type == DeviceType.CUDA:
            busy += event.self_device_time_total
        elif not cuda and event.name.startswith("aten::"):
            busy += event.self_cpu_time_total
        if _transparent(event.name) or event.device_type != DeviceType.CPU:
            continue
        parent = event.cpu_parent
        while parent is not None and _transparent(parent.name):
            parent = parent.cpu_parent
        if parent is not None:
            continue  # counted in its top-level parent
        spent = event.device_time_total if cuda else event.cpu_time_total
        totals[phase_of(event.name)] += spent
    per_step = {k: v / steps for k, v in totals.items()}
    per_step["shuffle"] = shuffle_seconds(trainer, device) * 1e6 / trainer.steps_per_epoch
    whole = sum(per_step.values()) or 1.0
    return {
        "steps": steps,
        "microseconds_per_step": per_step,
        "share": {k: v / whole for k, v in per_step.items()},
        "wall_microseconds_per_step": (clock["end"] - clock["start"]) * 1e6 / steps,
        "busy_microseconds_per_step": busy / steps,
        "ops": stepcost.count_ops(events, steps),
    }


def time_training(trainer, device, epochs: int, steps: int) -> dict:
    """Warm-up, then ``epochs`` timed epochs (median), or ``steps`` timed steps."""
    if steps:
        started = time.perf_counter()
        run_steps(trainer, min(steps, 20))
        synchronize(device)
        warmup = time.perf_counter() - started
        started = time.perf_counter()
        run_steps(trainer, steps)
        synchronize(device)
        seconds = time.perf_counter() - started
        return {
            "warmup_seconds": warmup,
            "timed_steps": steps,
            "step_seconds": seconds / steps,
            "interactions_per_second": steps * trainer.step_rows / seconds,
        }
    started = time.perf_counter()
    trainer.run_epoch()  # warm-up: kernels, allocator, caches
    warmup = time.perf_counter() - started
    times = []
    for _ in range(epochs):
        started = time.perf_counter()
        trainer.run_epoch()  # ends with .item(): the device has finished the epoch
        synchronize(device)
        times.append(time.perf_counter() - started)
    epoch_seconds = statistics.median(times)
    return {
        "warmup_seconds": warmup,
        "epoch_seconds": epoch_seconds,
        "epoch_seconds_all": times,
        "step_seconds": epoch_seconds / trainer.steps_per_epoch,
        "interactions_per_second": len(trainer.users) / epoch_seconds,
    }


def profile_worker(args) -> int:
    """Throughput, kernels, bandwidth and breakdown of mfrec's loop on one dataset."""
    import torch

    from mfrec.train.config import TrainConfig
    from mfrec.train.loop import Trainer

    device = require_device(args.allow_cpu)
    fit, _valid = speed.load_prepared(speed.prepare(args.size, args))
    hyperparameters = {"embedding_dim": str(args.embedding_dim), "device": device.type}
    hyperparameters.update(dict(item.split("=", 1) for item in args.mfrec_set))
    config = TrainConfig.from_hyperparameters(hyperparameters)
    trainer = Trainer(fit, config, device, horizon_epochs=config.num_epochs)
    timing = time_training(trainer, device, args.epochs, args.steps)
    traffic = step_bytes(trainer)
    copy = copy_bandwidth(device, megabytes=args.copy_megabytes)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = stepcost.peak_bandwidth(name)
    achieved = traffic["total"] / timing["step_seconds"] / 1e9
    result = {
        "size": args.size,
        "device": name,
        "fit_interactions": len(fit),
        "num_users": fit.num_users,
        "num_items": fit.num_items,
        "config": config.to_dict(),
        **timing,
        "bytes_per_step": traffic,
        "achieved_gb_per_second": achieved,
        "copy_gb_per_second": copy,
        "bandwidth_share_of_copy": achieved / copy,
        "peak_gb_per_second": peak / 1e9 if peak else None,
        "bandwidth_share_of_peak": achieved * 1e9 / peak if peak else None,
        "breakdown": breakdown(trainer, device, args.profile_steps),
        "peak_rss_mib": common.peak_rss_mib(),
        "peak_device_memory_mib": (
            torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        ),
    }
    Path(args.result_file).write_text(json.dumps(result, default=float))
    return 0


def tables(results: dict, args) -> list[common.Table]:
    throughput = common.Table(
        title=f"T (GPU) — mfrec throughput at embedding_dim {args.embedding_dim}",
        columns=[
            "dataset",
            "device",
            "FIT interactions",
            "s / step",
            "interactions / s (target ≥ 20M)",
            "kernels / step (target ≤ 40)",
            "wall µs / step",
            "busy µs / step",
            "peak GPU MiB",
        ],
    )
    bandwidth = common.Table(
        title="T (GPU) — memory traffic of a step against the card",
        columns=["dataset", "MB / step", "achieved GB/s", "copy GB/s", "share of copy",
                 "card peak GB/s", "share of peak"],
    )  # fmt: skip
    phases = common.Table(
        title="T (GPU) — where an mfrec training step spends its device time",
        columns=["dataset", *PHASES, "µs / step"],
    )
    for size, found in results.items():
        prof = found["profile"]
        rate = prof["interactions_per_second"]
        met = "met" if rate >= TARGET_INTERACTIONS_PER_SECOND else "NOT met"
        ops = prof["breakdown"]["ops"]["kernels_per_step"]
        ops_met = "met" if ops <= TARGET_KERNELS_PER_STEP else "NOT met"
        throughput.rows.append(
            [
                size,
                prof["device"],
                prof["fit_interactions"],
                prof["step_seconds"],
                f"{rate / 1e6:.2f}M ({met})",
                f"{ops:.0f} ({ops_met})",
                prof["breakdown"]["wall_microseconds_per_step"],
                prof["breakdown"]["busy_microseconds_per_step"],
                prof["peak_device_memory_mib"],
            ]
        )
        bandwidth.rows.append(
            [
                size,
                prof["bytes_per_step"]["total"] / 1e6,
                prof["achieved_gb_per_second"],
                prof["copy_gb_per_second"],
                prof["bandwidth_share_of_copy"],
                prof["peak_gb_per_second"],
                prof["bandwidth_share_of_peak"],
            ]
        )
        share = prof["breakdown"]["share"]
        per_step = sum(prof["breakdown"]["microseconds_per_step"].values())
        phases.rows.append([size, *(f"{share[p]:.0%}" for p in PHASES), per_step])
    peers = {size: found["speed"] for size, found in results.items() if found.get("speed")}
    return [throughput, bandwidth, phases, *(speed.tables(peers, args) if peers else [])]


def parse_args(argv):
    parser = speed.build_parser("python -m benchmarks.gpu", __doc__)
    parser.set_defaults(sizes="10m", device="cuda", threads=os.cpu_count() or 1)
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after a warm-up")
    parser.add_argument(
        "--steps", type=int, default=0, help="time this many steps instead of whole epochs"
    )
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
        passed += ["--steps", str(args.steps)]
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
        "achieved GB/s = bytes a step touches (benchmarks.stepcost.bytes_per_step) / seconds "
        "per step; copy GB/s = (read + write) bytes of a device-to-device copy per second; "
        "card peak from the data sheet (H100 SXM 3.35 TB/s, H200 4.8 TB/s)",
        "kernels / step: leaf ATen ops per step (benchmarks.stepcost.count_ops); busy µs = "
        "the device's kernel time (CPU: the ops' self time) per step",
    ]
    return common.write_and_print(
        header, tables(results, args), {"datasets": results}, notes, args.out_dir
    )


if __name__ == "__main__":
    raise SystemExit(main())
