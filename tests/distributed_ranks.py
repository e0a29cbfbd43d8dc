"""Ranks of a distributed test: spawned processes joined by gloo on the loopback.

Spawned children import their target by module name, so the targets live here (``tests/`` is
on the path) rather than in a test module. :func:`run_ranks` runs one on every rank and returns
what each returned (or raised), failing rather than hanging when a child dies or stalls.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import socket
import time

import numpy as np
import torch

from mfrec.train import distributed
from mfrec.train.ials import IALSTrainer
from mfrec.train.loop import Trainer
from mfrec.train.metrics import evaluate

CPU = torch.device("cpu")
WAIT_SECONDS = 120  # a child that has not answered by then has hung: the test fails


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _child(target, rank, world, port, args, results):
    torch.set_num_threads(1)
    try:
        with distributed.process_group(rank, world, rank, "127.0.0.1", port, "gloo") as group:
            results.put((rank, target(group, *args)))
    except BaseException as exc:  # reported to the test, which fails on it
        results.put((rank, exc))


def run_ranks(target, world: int = 2, args=(), timeout_env: str = "60") -> list:
    """``target(group, *args)`` on ``world`` spawned ranks; their results in rank order."""
    context = multiprocessing.get_context("spawn")
    results, port = context.Queue(), free_port()
    os.environ[distributed.TIMEOUT_ENV] = timeout_env
    try:
        children = [
            context.Process(target=_child, args=(target, rank, world, port, args, results))
            for rank in range(world)
        ]
        for child in children:
            child.start()
        found, deadline = {}, time.monotonic() + WAIT_SECONDS
        while len(found) < world and time.monotonic() < deadline:
            try:
                rank, value = results.get(timeout=0.5)
                found[rank] = value
            except queue.Empty:
                if not any(child.is_alive() for child in children):
                    break
        for child in children:
            child.join(timeout=WAIT_SECONDS)
    finally:
        os.environ.pop(distributed.TIMEOUT_ENV, None)
    for child in children:
        if child.is_alive():
            child.kill()
    return [found.get(rank, f"rank {rank} returned nothing") for rank in range(world)]


# --- targets (top level: spawned children import them) ----------------------------------------


def ials_factors(group, data, params, epochs):
    trainer = IALSTrainer(data, params, CPU)
    losses = [trainer.run_epoch() for _ in range(epochs)]
    return (
        trainer.model.user_embeddings.numpy().copy(),
        trainer.model.item_embeddings.numpy().copy(),
        losses,
    )


def sgd_quality(group, data, valid, config, dense_ratio=None):
    """SGD's VALID NDCG@10, losses and weights; ``dense_ratio`` forces the exchange: 0 the
    rows' all-gather, a large one the table's all-reduce (``loop.DENSE_RATIO``)."""
    from mfrec.train import loop

    if dense_ratio is not None:
        loop.DENSE_RATIO = dense_ratio
    trainer = Trainer(data, config, CPU, horizon_epochs=config.num_epochs)
    losses = [trainer.run_epoch() for _ in range(config.num_epochs)]
    state = {name: value.numpy().copy() for name, value in trainer.model.state_dict().items()}
    return evaluate(trainer.model, data, valid)["ndcg@10"], losses, state


def several(group, calls):
    """Run several targets in one spawn (starting a rank costs seconds): ``{name: result}``."""
    return {name: target(group, *args) for name, (target, args) in calls.items()}


def one_dies(group):
    if group.rank == 1:
        os._exit(3)  # a crash: no goodbye to the others
    try:
        group.barrier()
    except distributed.PeerFailedError as exc:
        return str(exc)
    return "no error"


def decisions(group, seed):
    mine = np.random.default_rng(seed + group.rank).random()  # differs per rank
    return group.broadcast(mine), group.any(group.rank == 1)
