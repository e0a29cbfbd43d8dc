"""Benchmark: distributed training on this machine, 1 process against 2 (gloo on the loopback).

For each data set (ML-100K, and the synthetic 1M of ``benchmarks.speed_process``), both
trainers run in 1 process on 2 threads, in 1 process on 1 thread, and in 2 processes on 1 thread
each (the same 2 cores), every process a spawned worker. On a shared machine a 2-thread process
suffers most from other load (torch's many short parallel regions), so the speed-up is taken
against 1 process on 1 thread:

- **iALS** (``IALSTrainer``, cg, ``--dim``): seconds per iteration (``run_epoch``: user and item
  half-steps, the all-gathers, the objective), the median over ``--iterations``;
- **SGD** (``Trainer``, the default loss, batch 1024, ``--dim``): seconds per epoch, the median
  over ``--epochs`` (one epoch on synthetic 1M);
- **communication**: rank 0's seconds inside the collectives (all-gather of the factor shares;
  for SGD the all-gather of the touched rows and gradients and the all-reduce of biases and
  loss), timed around each call; it includes waiting for the slower rank;
- **dense all-reduce instead** (SGD): the seconds of one all-reduce of the whole
  ``(num_users + num_items, d)`` table, timed ``--reps`` times, times the steps of an epoch: what
  an epoch would spend exchanging dense gradients instead of the touched rows.

Bytes are counted from the shapes (float32, int64 indices), per rank sent.

    python -m benchmarks.distributed                          # ML-100K and synthetic 1M
    python -m benchmarks.distributed --datasets ml-100k --iterations 3 --epochs 2
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import socket
import statistics
import time

from benchmarks import common

logger = logging.getLogger(__name__)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load(name: str, args):
    if name == "ml-100k":
        return common.load_ml100k(args.data_dir)
    from benchmarks import speed_process

    return speed_process.load_full(speed_process.prepared_full(name, args))


def _timed_group(group, clock: dict):
    """``group`` whose collectives add their seconds to ``clock["seconds"]``."""
    from mfrec.train import distributed

    class Timed(distributed.Group):
        def all_reduce_(self, tensor):
            started = time.perf_counter()
            try:
                return super().all_reduce_(tensor)
            finally:
                clock["seconds"] += time.perf_counter() - started

        def all_gather_cat(self, tensor):
            started = time.perf_counter()
            try:
                return super().all_gather_cat(tensor)
            finally:
                clock["seconds"] += time.perf_counter() - started

    return Timed(group.rank, group.world_size, group.local_rank, group.device)


def worker(rank: int, world: int, threads: int, port: int, name: str, args, results) -> None:
    import torch

    from mfrec.train import distributed
    from mfrec.train.config import TrainConfig
    from mfrec.train.ials import IALSParams, IALSTrainer
    from mfrec.train.loop import Trainer

    common.set_threads(threads)
    data = load(name, args)
    cpu = torch.device("cpu")
    with distributed.process_group(rank, world, rank, "127.0.0.1", port, "gloo") as group:
        clock = {"seconds": 0.0}
        if group.distributed:
            distributed._current = _timed_group(group, clock)
        out = {"interactions": len(data), "users": data.num_users, "items": data.num_items}
        trainer = IALSTrainer(data, IALSParams(embedding_dim=args.dim), cpu)
        out["ials"] = _time_epochs(trainer, args.iterations, clock)
        config = TrainConfig(model="sgd", embedding_dim=args.dim, batch_size=1024, device="cpu")
        trainer = Trainer(data, config, cpu, horizon_epochs=args.epochs)
        out["sgd"] = _time_epochs(trainer, args.epochs if name == "ml-100k" else 1, clock)
        out["sgd"]["steps"] = trainer.steps_per_epoch
        out["sgd"]["exchange"] = "all-reduce" if trainer._dense is not None else "rows"
        out["sgd"]["rows_per_step"] = int(
            2 * trainer._share_positions.numel() + config.negatives
            if trainer.shared
            else trainer._share_positions.numel() * (2 + config.negatives)
        )
        if group.distributed:  # one step's exchange alone, both ways (no compute to wait for)
            # the trainer's own two exchanges, on a step's shapes
            rows = out["sgd"]["rows_per_step"]
            index = torch.randint(0, len(trainer.embeddings), (rows,))
            grad = torch.randn(rows, args.dim)
            if trainer._dense is None:
                trainer._dense = trainer.embeddings.new_zeros(
                    len(trainer.embeddings) * (args.dim + 1)
                )
            out["dense_all_reduce_seconds"] = _median_seconds(
                lambda: trainer._all_reduce_rows(index, grad), args.reps
            )
            out["rows_all_gather_seconds"] = _median_seconds(
                lambda: trainer._all_gather_rows(index, grad), args.reps
            )
        distributed._current = group
    if rank == 0:
        results.put(out)


def _median_seconds(call, reps: int) -> float:
    seconds = []
    for _ in range(reps):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def _time_epochs(trainer, epochs: int, clock: dict) -> dict:
    seconds, comm = [], []
    for _ in range(epochs):
        clock["seconds"] = 0.0
        started = time.perf_counter()
        trainer.run_epoch()
        seconds.append(time.perf_counter() - started)
        comm.append(clock["seconds"])
    return {"seconds": statistics.median(seconds), "comm_seconds": statistics.median(comm)}


# (processes, threads each): 1 process on all the cores, on one, and 2 processes on one each.
CONFIGS = ((1, 2), (1, 1), (2, 1))


def run(name: str, world: int, threads: int, args) -> dict:
    context = multiprocessing.get_context("spawn")
    results, port = context.Queue(), _free_port()
    workers = [
        context.Process(target=worker, args=(rank, world, threads, port, name, args, results))
        for rank in range(world)
    ]
    for process in workers:
        process.start()
    load = os.getloadavg()[0]
    found = results.get(timeout=args.timeout)
    found["load_average_1min"] = [load, os.getloadavg()[0]]
    for process in workers:
        process.join(timeout=60)
    logger.info("%s, %d processes x %d threads: %s", name, world, threads, found)
    return found


def tables(results: dict, args) -> list[common.Table]:
    table = common.Table(
        "Seconds per iALS iteration and SGD epoch, 1 vs 2 processes (gloo, loopback); bytes "
        "sent per rank per iteration or epoch (all-reduce: the buffer's size, as sent by a "
        "ring)",
        [
            "data",
            "model",
            "processes x threads",
            "seconds",
            "comm seconds",
            "speed-up",
            "bytes sent/rank",
            "load avg",
        ],
    )
    dense = common.Table(
        "SGD: exchanging touched rows against a dense all-reduce, per epoch (2 processes)",
        ["data", "steps", "rows/step/rank", "rows all-gather MB", "dense all-reduce MB",
         "comm s in training", "rows exchange s (alone)", "dense all-reduce s (alone)"],
    )  # fmt: skip
    d = args.dim
    for name, by_world in results.items():
        one = by_world["1x1"]
        n, m = one["users"], one["items"]
        for model in ("ials", "sgd"):
            for world, found in by_world.items():
                w = int(world.split("x")[0])
                if model == "ials":  # each rank sends its share of W then of H
                    sent = 4 * d * (n + m) / w if w > 1 else 0
                elif found["sgd"].get("exchange") == "all-reduce":
                    sent = found["sgd"]["steps"] * 4 * (d + 1) * (n + m)
                else:
                    rows = found["sgd"]["rows_per_step"]
                    sent = found["sgd"]["steps"] * rows * (4 * d + 8) if w > 1 else 0
                speedup = one[model]["seconds"] / found[model]["seconds"]
                table.rows.append([
                    name, model, world, round(found[model]["seconds"], 3),
                    round(found[model]["comm_seconds"], 3), round(speedup, 2),
                    f"{sent / 1e6:.1f} MB", f"{found['load_average_1min'][1]:.1f}",
                ])  # fmt: skip
        two = by_world.get("2x1")
        if two is not None:
            steps, rows = two["sgd"]["steps"], two["sgd"]["rows_per_step"]
            dense.rows.append([
                name, steps, rows, round(steps * rows * (4 * d + 8) / 1e6, 1),
                round(steps * 4 * (d + 1) * (n + m) / 1e6, 1),
                f"{two['sgd']['comm_seconds']:.2f} ({two['sgd']['exchange']})",
                round(steps * two["rows_all_gather_seconds"], 2),
                round(steps * two["dense_all_reduce_seconds"], 2),
            ])  # fmt: skip
    return [table, dense]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="ml-100k,1m")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="the ml-100k folder")
    parser.add_argument("--synth-dir", default="/tmp/mfrec-bench-data")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--out-dir", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    header = common.run_header("distributed", "benchmarks.distributed", argv)
    header["load_average_at_start"] = os.getloadavg()
    results = {
        name: {f"{w}x{t}": run(name, w, t, args) for w, t in CONFIGS}
        for name in args.datasets.split(",")
    }
    notes = [
        f"d={args.dim}; configurations processes x threads {CONFIGS}; speed-up against "
        f"1 process x 1 thread; medians of {args.iterations} iALS iterations and "
        f"{args.epochs} SGD epochs (1 on synthetic 1M); comm = rank 0's seconds inside "
        "collectives (waits for the other rank included); load average in the JSON",
    ]
    return common.write_and_print(header, tables(results, args), results, notes, args.out_dir)


if __name__ == "__main__":
    raise SystemExit(main())
