"""Launching a distributed training job: ranks, rendezvous, processes and their failures.

Every SageMaker host runs ``train`` as usual. The job has ``len(hosts) × processes`` ranks:
``resourceconfig.json``'s ``hosts`` order gives the node rank, and a process's global rank is
``node rank × processes + local rank``. The ranks meet at ``hosts[0]``, port
:data:`RENDEZVOUS_PORT` (as AWS's training toolkit does); ``MASTER_ADDR`` and ``MASTER_PORT``
override both. ``network_interface_name`` of ``resourceconfig.json`` goes to
``NCCL_SOCKET_IFNAME`` and ``GLOO_SOCKET_IFNAME`` unless they are set.

A job of one process on one host joins no process group, unless ``MFREC_PROCESS_GROUP=always``
(:data:`mfrec.train.distributed.PROCESS_GROUP_ENV`): then it meets itself as a multi-process job
would (``127.0.0.1``, port :data:`RENDEZVOUS_PORT`, or ``MASTER_ADDR``/``MASTER_PORT``) in a
group of world size 1, so that one GPU runs NCCL's collectives (:attr:`Layout.joins_group`).

With one process per host the job joins the process group in its own process; with more, this
module starts them (:func:`run_processes`): each is ``python -m mfrec train ...`` again, told
its rank by the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``, as ``torchrun`` does, and :data:`LAUNCHED_ENV`), so it joins rather than
launches. SIGTERM and SIGINT are passed on to them. When one exits with an error, the others
get :data:`GRACE_SECONDS` to find out through their collectives and exit by themselves, and are
then killed: the job never hangs on a lost process.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mfrec.job_process import write_failure
from mfrec.train.distributed import join_alone
from mfrec.train.errors import ConfigError

logger = logging.getLogger(__name__)

RENDEZVOUS_PORT = 7777
LAUNCHED_ENV = "MFREC_LAUNCHED"  # set in the processes run_processes starts
BACKEND_ENV = "MFREC_BACKEND"
GRACE_SECONDS = 30.0
POLL_SECONDS = 0.2
PROCESSES = "processes"  # the hyperparameter


@dataclass(frozen=True)
class Layout:
    """Where this host's processes stand in the job."""

    processes: int  # on this host
    num_hosts: int = 1
    node_rank: int = 0
    address: str = "127.0.0.1"
    port: int = RENDEZVOUS_PORT
    backend: str = "gloo"
    join_alone: bool = False  # MFREC_PROCESS_GROUP=always

    @property
    def world_size(self) -> int:
        return self.num_hosts * self.processes

    @property
    def joins_group(self) -> bool:
        """Whether the job's processes join a process group (several ranks, or asked to)."""
        return self.world_size > 1 or self.join_alone

    def rank(self, local_rank: int) -> int:
        return self.node_rank * self.processes + local_rank


@dataclass(frozen=True)
class Rank:
    """One process's place: what :func:`mfrec.train.distributed.process_group` takes."""

    rank: int
    world_size: int
    local_rank: int
    address: str
    port: int
    backend: str


def parse_processes(hyperparameters) -> int | None:
    """The ``processes`` hyperparameter: an integer >= 1, or None for ``auto`` (the default)."""
    text = str(hyperparameters.get(PROCESSES, "auto")).strip()
    if text.lower() == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(
            f"{PROCESSES}={text!r} must be auto (one per visible GPU, else 1) or an integer >= 1"
        )
    return value


def _uses_cuda(device_spec: str) -> bool:
    import torch

    return device_spec != "cpu" and torch.cuda.is_available() and torch.cuda.device_count() > 0


def plan(
    hyperparameters,
    hosts: tuple[str, ...] = (),
    current_host: str | None = None,
    processes: int | None = None,
) -> Layout:
    """The job's layout from the hyperparameters (``processes``, ``device``), the hosts and the
    environment; ``processes`` (``--processes``) overrides the hyperparameter."""
    processes = processes or parse_processes(hyperparameters)
    device = str(hyperparameters.get("device", "auto"))
    alone = join_alone()  # a bad MFREC_PROCESS_GROUP fails here, before any process starts
    if processes is None and len(hosts) <= 1 and device == "cpu" and not alone:
        return Layout(1)  # the common case: torch is not even asked about GPUs
    cuda = _uses_cuda(device)
    if processes is None:
        processes = 1
        if cuda:
            import torch

            processes = torch.cuda.device_count()
    if cuda:
        import torch

        if processes > torch.cuda.device_count():
            raise ConfigError(
                f"{PROCESSES}={processes} but this host has {torch.cuda.device_count()} visible "
                "GPUs; NCCL needs one GPU per process: lower processes or set device=cpu"
            )
    hosts = tuple(hosts) or ((current_host,) if current_host else ())
    node_rank = hosts.index(current_host) if current_host in hosts else 0
    default_address = hosts[0] if len(hosts) > 1 else "127.0.0.1"
    port_text = os.environ.get("MASTER_PORT") or str(RENDEZVOUS_PORT)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"MASTER_PORT={port_text!r} must be a port number (1 to 65535)")
    return Layout(
        processes=processes,
        num_hosts=max(1, len(hosts)),
        node_rank=node_rank,
        address=os.environ.get("MASTER_ADDR") or default_address,
        port=int(port_text),
        backend="nccl" if cuda else "gloo",
        join_alone=alone,
    )


def set_network_interface(name: str | None) -> None:
    """``network_interface_name`` to NCCL's and gloo's socket variables, unless they are set."""
    if not name:
        return
    for variable in ("NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME"):
        if variable not in os.environ:
            os.environ[variable] = name
            logger.info("%s=%s (from resourceconfig.json's network_interface_name)", variable, name)


def launched_rank() -> Rank | None:
    """This process's rank when :func:`run_processes` started it, else None."""
    if os.environ.get(LAUNCHED_ENV) != "1":
        return None
    env = os.environ
    return Rank(
        rank=int(env["RANK"]),
        world_size=int(env["WORLD_SIZE"]),
        local_rank=int(env["LOCAL_RANK"]),
        address=env["MASTER_ADDR"],
        port=int(env["MASTER_PORT"]),
        backend=env.get(BACKEND_ENV, "gloo"),
    )


def own_rank(layout: Layout) -> Rank:
    """The rank of a host that runs one process (it joins in its own process)."""
    return Rank(layout.rank(0), layout.world_size, 0, layout.address, layout.port, layout.backend)


def run_processes(
    arguments: list[str],
    layout: Layout,
    should_stop: Callable[[], bool],
    failure_file: Path | None,
) -> int:
    """Run ``python -m mfrec <arguments>`` once per local rank and wait for all of them.

    Returns the first non-zero exit code (a killed process counts as 1), else 0. A process
    that died without writing the failure file (killed) gets one written for it.
    """
    logger.info(
        "starting %d processes on this host: ranks %d to %d of %d (%s, rendezvous %s:%d)",
        layout.processes, layout.rank(0), layout.rank(layout.processes - 1),
        layout.world_size, layout.backend, layout.address, layout.port,
    )  # fmt: skip
    children = []
    for local_rank in range(layout.processes):
        env = dict(
            os.environ,
            **{
                LAUNCHED_ENV: "1",
                BACKEND_ENV: layout.backend,
                "RANK": str(layout.rank(local_rank)),
                "WORLD_SIZE": str(layout.world_size),
                "LOCAL_RANK": str(local_rank),
                "LOCAL_WORLD_SIZE": str(layout.processes),
                "MASTER_ADDR": layout.address,
                "MASTER_PORT": str(layout.port),
            },
        )
        command = [sys.executable, "-m", "mfrec", *arguments]
        children.append(subprocess.Popen(command, env=env))
    return _wait(children, layout, should_stop, failure_file)


def _wait(children, layout: Layout, should_stop, failure_file: Path | None) -> int:
    forwarded, failed_at, code = False, None, 0
    while True:
        if should_stop() and not forwarded:  # SIGTERM/SIGINT reached the launcher
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            forwarded = True
        codes = [child.poll() for child in children]
        if forwarded:  # a process ending by the signal passed on has stopped as asked
            codes = [0 if returned == -signal.SIGTERM else returned for returned in codes]
        for local_rank, returned in enumerate(codes):
            if returned not in (None, 0) and code == 0:
                code = returned if returned > 0 else 1
                failed_at = time.monotonic()
                _report(local_rank, returned, layout, failure_file)
        if all(returned is not None for returned in codes):
            return code
        if failed_at is not None and time.monotonic() - failed_at > GRACE_SECONDS:
            for local_rank, child in enumerate(children):
                if child.poll() is None:
                    logger.error("killing rank %d, still running after a failure", local_rank)
                    child.kill()
        time.sleep(POLL_SECONDS)


def _report(local_rank: int, returned: int, layout: Layout, failure_file: Path | None) -> None:
    rank = layout.rank(local_rank)
    if returned > 0:
        logger.error("rank %d exited with code %d", rank, returned)
        return
    reason = (
        f"PeerFailedError: process rank {rank} of {layout.world_size} was killed by "
        f"{signal.Signals(-returned).name} (out of memory, or stopped from outside); every "
        "process of the job stops. Its log shows how far it got."
    )
    logger.error(reason)
    if failure_file is not None and not failure_file.exists():
        write_failure(failure_file, reason)
