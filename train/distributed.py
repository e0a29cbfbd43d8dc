"""Training across processes and hosts with :mod:`torch.distributed` (gloo on the CPU, NCCL on
CUDA): the process group, the few collectives the trainers use, and what happens on failure.

One training job is ``world_size`` processes; each runs the same program on the same data (a
``ShardedByS3Key`` host's shard is first gathered, :func:`gather_interactions`) and takes the
same decisions, so the control flow of every rank matches and every collective is met. Global
rank 0 decides what depends on measurement (validation scores, the search's time limit, a stop)
and broadcasts it, and alone writes checkpoints, outputs and the model.

With one process there is no process group at all: :func:`current` is :data:`SOLO`, whose
collectives return their input, so the single-process path is the one of before. Unless
``MFREC_PROCESS_GROUP=always`` (:data:`PROCESS_GROUP_ENV`): then a job of one process joins a
real group of world size 1 (NCCL on CUDA, gloo on the CPU) and every collective runs, so a
one-GPU host can exercise the code path of a multi-GPU job (issue 14). The default, ``auto``,
joins only when there are several processes.

**Timeouts and failures.** Every collective runs under the group's timeout,
``MFREC_COLLECTIVE_TIMEOUT_SECONDS`` (default :data:`DEFAULT_TIMEOUT_SECONDS`); it bounds the
longest wait of a rank for the others, so it must exceed the longest work rank 0 does alone
(scoring every validation user, writing a checkpoint). A peer that exits or crashes closes its
connections, and the collectives of the others fail at once; a peer that hangs is found when
the timeout ends. Either way the error becomes :class:`PeerFailedError`, which ends the job
with exit code 1 on every rank and the failure file on rank 0. The same timeout bounds the
rendezvous: a rank whose peers never arrive (a host that failed to start, a wrong
``MASTER_ADDR``) gives up after it.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from mfrec.train.errors import ConfigError, MfrecError

logger = logging.getLogger(__name__)

TIMEOUT_ENV = "MFREC_COLLECTIVE_TIMEOUT_SECONDS"
DEFAULT_TIMEOUT_SECONDS = 1800.0
PROCESS_GROUP_ENV = "MFREC_PROCESS_GROUP"
PROCESS_GROUP_CHOICES = ("auto", "always")  # auto: a process group only with several processes


class PeerFailedError(MfrecError):
    """Another process of a distributed job failed, was killed or stopped answering."""


def collective_timeout() -> float:
    """Seconds a collective may wait (:data:`TIMEOUT_ENV`, else the default)."""
    text = os.environ.get(TIMEOUT_ENV, "")
    try:
        seconds = float(text) if text else DEFAULT_TIMEOUT_SECONDS
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise MfrecError(f"{TIMEOUT_ENV}={text!r} must be a number of seconds > 0, e.g. 1800")
    return seconds


def join_alone() -> bool:
    """Whether a job of one process joins a process group anyway (:data:`PROCESS_GROUP_ENV`
    is ``always``; unset or ``auto``: no)."""
    text = os.environ.get(PROCESS_GROUP_ENV, "")
    choice = text.strip().lower() or "auto"
    if choice not in PROCESS_GROUP_CHOICES:
        raise ConfigError(
            f"{PROCESS_GROUP_ENV}={text!r} must be auto (a process group only with several "
            "processes; the default) or always (join one even alone, e.g. to run NCCL on one GPU)"
        )
    return choice == "always"


@dataclass(frozen=True)
class Group:
    """This process's place in the job: ``rank`` of ``world_size`` (global), ``local_rank`` on
    its host. ``joined``: a real process group (always, with ``world_size > 1``). Outside one
    every collective returns its input."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"  # where the small tensors of collectives live (NCCL: this GPU)
    joined: bool = False

    @property
    def is_primary(self) -> bool:
        """Global rank 0: the one process that writes checkpoints, outputs and the model."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether collectives run: several ranks, or a group joined alone (``joined``)."""
        return self.joined or self.world_size > 1

    def shard(self, costs: np.ndarray) -> tuple[int, int]:
        """This rank's contiguous share ``[start, stop)`` of rows costing ``costs`` (n,): cut
        where the cumulative cost crosses each rank's equal part."""
        if not self.distributed:
            return 0, len(costs)
        return shard_bounds(costs, self.world_size)[self.rank]

    # --- collectives ------------------------------------------------------------------------

    def broadcast(self, value, src: int = 0):
        """``value`` of rank ``src`` on every rank (any picklable object)."""
        if not self.distributed:
            return value
        box = [value]
        with _translated("broadcast"):
            torch.distributed.broadcast_object_list(box, src=src)
        return box[0]

    def all_gather_object(self, value) -> list:
        """Every rank's ``value``, in rank order."""
        if not self.distributed:
            return [value]
        gathered = [None] * self.world_size
        with _translated("all_gather_object"):
            torch.distributed.all_gather_object(gathered, value)
        return gathered

    def all_reduce_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the ranks, in place."""
        if self.distributed:
            with _translated("all_reduce"):
                torch.distributed.all_reduce(tensor)
        return tensor

    def all_gather_cat(self, tensor: torch.Tensor) -> torch.Tensor:
        """The ranks' tensors of equal shape, concatenated along dim 0 in rank order."""
        if not self.distributed:
            return tensor
        out = tensor.new_empty((self.world_size * tensor.shape[0], *tensor.shape[1:]))
        with _translated("all_gather"):
            torch.distributed.all_gather_single(out, tensor.contiguous())
        return out

    def all_gather_rows(self, table: torch.Tensor, bounds: list[tuple[int, int]]) -> None:
        """Copy every rank's rows ``bounds[rank]`` of ``table`` (n, d) to every rank, in place
        (shares padded to the largest for the one all-gather)."""
        if not self.distributed:
            return
        width = max(stop - start for start, stop in bounds)
        start, stop = bounds[self.rank]
        mine = table.new_zeros((width, *table.shape[1:]))
        mine[: stop - start] = table[start:stop]
        gathered = self.all_gather_cat(mine)
        for rank, (start, stop) in enumerate(bounds):
            table[start:stop] = gathered[rank * width : rank * width + stop - start]

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any."""
        if not self.distributed:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        return bool(self.all_reduce_(value)[0] > 0)

    def barrier(self) -> None:
        self.any(False)  # a tiny all-reduce: it honours the timeout on gloo and NCCL alike


SOLO = Group()
_current: Group = SOLO


def current() -> Group:
    """The process group of this process (:data:`SOLO` outside a distributed job)."""
    return _current


def shard_bounds(costs: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """Cut rows of costs ``costs`` (n,) into ``parts`` contiguous shares of about equal cost."""
    cumulative = np.cumsum(np.asarray(costs, dtype=np.float64))
    total = cumulative[-1] if len(cumulative) else 0.0
    cuts = [0]
    for part in range(1, parts):
        cuts.append(
            max(cuts[-1], int(np.searchsorted(cumulative, total * part / parts, side="right")))
        )
    cuts.append(len(costs))
    return list(zip(cuts[:-1], cuts[1:], strict=True))


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """A failed collective (a peer gone or silent past the timeout) as :class:`PeerFailedError`."""
    try:
        yield
    except RuntimeError as exc:  # DistBackendError and gloo's errors derive from it
        raise PeerFailedError(
            f"another process of this distributed job failed or stopped answering during "
            f"{what} ({' '.join(str(exc).split())[:300]}); every process stops. Its own log "
            f"says why (a crash, bad data, a lost host); a silent one is given up after "
            f"{TIMEOUT_ENV}={collective_timeout():g} s"
        ) from exc


@contextmanager
def process_group(
    rank: int, world_size: int, local_rank: int, address: str, port: int, backend: str
) -> Iterator[Group]:
    """Join the job's process group for the duration of the block (nothing when
    ``world_size == 1``, unless :func:`join_alone`); :func:`current` returns it meanwhile."""
    global _current
    if world_size == 1 and not join_alone():
        yield SOLO
        return
    timeout = datetime.timedelta(seconds=collective_timeout())
    # NCCL then raises on a timed-out or failed collective instead of waiting forever.
    os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    device = "cpu"
    if backend == "nccl":  # one GPU per process on its host: "cuda" means this one
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    logger.info(
        "joining the process group at %s:%d as rank %d of %d (%s, collective timeout %.0f s)",
        address, port, rank, world_size, backend, timeout.total_seconds(),
    )  # fmt: skip
    try:
        torch.distributed.init_process_group(
            backend,
            init_method=f"tcp://{address}:{port}",
            rank=rank,
            world_size=world_size,
            timeout=timeout,
        )
    except (RuntimeError, ValueError) as exc:
        raise PeerFailedError(
            f"rank {rank} of {world_size} could not join the others at {address}:{port} "
            f"within {timeout.total_seconds():g} s ({' '.join(str(exc).split())[:300]}); check "
            "that every host runs the job and can reach that address (MASTER_ADDR/MASTER_PORT)"
        ) from exc
    _current = Group(rank, world_size, local_rank, device, joined=True)
    prefix = _RankPrefix(f"rank {rank}/{world_size}: ")
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:  # the ranks' lines interleave in one log
        handler.addFilter(prefix)
    try:
        yield _current
    finally:
        _current = SOLO
        for handler in handlers:
            handler.removeFilter(prefix)
        torch.distributed.destroy_process_group()


class _RankPrefix(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.prefix):
            record.msg = f"{self.prefix}{record.msg}"
        return True


def collective_stop(should_stop: Callable[[], bool], group: Group | None = None):
    """``should_stop`` agreed by every rank: true everywhere once true on any (SIGTERM reaches
    hosts at different moments; all must checkpoint at the same step)."""
    group = group or current()
    if not group.distributed:
        return should_stop
    return lambda: group.any(should_stop())


def gather_interactions(data, group: Group | None = None, contributes: bool = True):
    """Every host's shard (``ShardedByS3Key``) joined into one :class:`Interactions`, the same on
    every rank: rows in rank order, ids indexed in order of first appearance, so that the id
    maps agree everywhere. ``contributes`` is False on the other processes of a host (they
    read the same shard as its first)."""
    from mfrec.train.interactions import Interactions

    group = group or current()
    if not group.distributed:
        return data
    shards = group.all_gather_object(_shard_arrays(data) if contributes else None)
    shards = [shard for shard in shards if shard is not None]
    columns = {
        name: None if shards[0][name] is None else np.concatenate([s[name] for s in shards])
        for name in shards[0]
    }
    joined = Interactions.from_ids(**columns)
    logger.info(
        "gathered %d shards: %d interactions, %d users, %d items",
        len(shards), len(joined), joined.num_users, joined.num_items,
    )  # fmt: skip
    return Interactions(**{**joined.__dict__, "meta": dict(data.meta)})


def _shard_arrays(data) -> dict:
    return {
        "user_ids": data.user_ids[data.user_idx],
        "item_ids": data.item_ids[data.item_idx],
        "timestamps": data.timestamps,
        "weights": data.weights,
        "event_types": data.event_types,
    }
