"""Which device each gunicorn worker serves from, on CPU and on GPU instances.

On an instance with GPUs every worker holds its own CUDA context and its own copy of the model,
so the workers are spread over the GPUs and kept few:

- worker slot *i* (0, 1, ... in the master, reused when a worker is replaced) serves from
  ``cuda:(i % device_count)``, so every GPU is used and none holds more than its share;
- without ``SAGEMAKER_MODEL_SERVER_WORKERS``, :func:`default_workers` gives
  :data:`WORKERS_PER_GPU` workers per GPU (one request at a time keeps a GPU busy; a second
  overlaps its host work), and the CPU count on a CPU instance;
- a worker that cannot place the model on its GPU (out of memory, a failed context) says so in
  one log line and serves from the CPU instead, deliberately, rather than letting the error stop
  the whole server;
- every worker logs the device it serves from when it starts, so a mixed placement is visible.
"""

from __future__ import annotations

import logging
import os

import torch

logger = logging.getLogger(__name__)

# Workers per GPU when the worker count is not set. Two lets one worker's host-side work
# (decoding, encoding) overlap the other's scoring; more only adds CUDA contexts and model
# copies. The throughput at 1 and 2 is to be measured on a GPU instance (scripts/gpu-check).
WORKERS_PER_GPU = 2


def gpu_count() -> int:
    """GPUs this process can see (0 on a CPU build or instance), without creating a CUDA
    context (:func:`torch.cuda.device_count` does not initialise CUDA, so workers forked
    afterwards can still use it)."""
    if torch.version.cuda is None:
        return 0
    return torch.cuda.device_count()


def default_workers(cpu_count: int | None = None, gpus: int | None = None) -> int:
    """The worker count when none is configured: :data:`WORKERS_PER_GPU` per GPU, else one
    per CPU core."""
    gpus = gpu_count() if gpus is None else gpus
    if gpus:
        return WORKERS_PER_GPU * gpus
    return max(1, cpu_count if cpu_count is not None else os.cpu_count() or 1)


def all_on_cpu(spec: str, gpus: int | None = None) -> bool:
    """Whether every worker serves from the CPU with the configured device ``spec``: ``cpu``,
    or ``auto`` where no GPU is visible."""
    spec = str(spec)
    gpus = gpu_count() if gpus is None and spec == "auto" else gpus
    return spec == "cpu" or (spec == "auto" and not gpus)


def assign_slot(server, worker) -> None:
    """gunicorn ``pre_fork`` hook (in the master): give ``worker`` the lowest slot no living
    worker holds, so that a replaced worker takes its predecessor's GPU."""
    taken = {getattr(w, "mfrec_slot", None) for w in server.WORKERS.values()}
    worker.mfrec_slot = next(slot for slot in range(len(taken) + 1) if slot not in taken)


def worker_device(slot: int, spec: str, gpus: int | None = None) -> str:
    """The device spelling for worker ``slot`` given the configured ``spec`` (auto, cpu,
    cuda, cuda:N): ``auto`` and ``cuda`` become ``cuda:(slot % gpus)`` when GPUs are visible;
    ``cpu`` and an explicit ``cuda:N`` are kept."""
    spec = str(spec)
    if spec not in ("auto", "cuda"):
        return spec
    gpus = gpu_count() if gpus is None else gpus
    return f"cuda:{slot % gpus}" if gpus else spec


def place_worker(recommender, slot: int) -> str:
    """Put ``recommender`` on worker ``slot``'s device and answer one request there; on an
    allocation or CUDA failure, log one line and serve from the CPU. Returns the device used.

    ``recommender`` is a :class:`mfrec.serve.recommender.Recommender` (its ``device_spec``
    and ``warm_up`` are used).
    """
    wanted = worker_device(slot, recommender.device_spec)
    recommender.device_spec = wanted
    try:
        recommender.warm_up()
    except RuntimeError as exc:  # torch.OutOfMemoryError and CUDA errors are RuntimeErrors
        if wanted == "cpu":
            raise
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        logger.error(
            "worker %d (pid %d): could not place the model on %s (%s); serving from the CPU "
            "instead: set SAGEMAKER_MODEL_SERVER_WORKERS lower or use a GPU with more memory",
            slot,
            os.getpid(),
            wanted,
            first_line,
        )
        _move(recommender, "cpu")
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()
        recommender.warm_up()
    device = str(recommender.device)
    logger.info("worker %d (pid %d): serving from %s", slot, os.getpid(), device)
    return device


def _move(recommender, spec: str) -> None:
    """Make ``recommender`` build its tensors anew on ``spec`` at its next request (it builds
    them on first use: see ``Recommender.tensors``)."""
    recommender.device_spec = spec
    recommender.device = None
    recommender._tensors = None  # noqa: SLF001 -- the documented way to rebuild them
