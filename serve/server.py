"""``mfrec serve``: the Flask app under gunicorn, as a SageMaker serving container runs it.

- The model comes from ``--model-dir`` or ``$SAGEMAKER_BASE_DIR/model`` (``/opt/ml/model``),
  computed by the CLI when ``mfrec serve`` starts. It is loaded in the gunicorn master *before*
  the port opens (``preload_app``), so the first ``/ping`` that connects answers 200 and the workers
  share the arrays copy-on-write instead of loading a copy each (``gc.freeze`` keeps the garbage
  collector from touching, and so copying, the id dictionaries).
- Port ``--port``, else ``SAGEMAKER_BIND_TO_PORT``, else 8080; workers and timeout from
  ``SAGEMAKER_MODEL_SERVER_WORKERS``/``MODEL_SERVER_WORKERS`` and
  ``SAGEMAKER_MODEL_SERVER_TIMEOUT``/``MODEL_SERVER_TIMEOUT`` (see :mod:`mfrec.serve.app`).
- Workers are ``gthread`` workers with :data:`THREADS_PER_WORKER` threads: a ``/ping`` is
  answered while a long batch request is being scored (torch releases the GIL while it computes)
  and while slow clients trickle their requests. :class:`mfrec.serve.workers.HeadFirstWorker`
  reads a request's head and its first 64 kB in the worker's event loop, so a connection holds
  no thread until that has arrived; the head must be complete within ``MFREC_HEADER_TIMEOUT``
  seconds of its first byte and a body (any body a thread reads, chunked or over the limit
  too) must arrive within ``MFREC_BODY_TIMEOUT`` seconds plus one per 64 kB
  (:mod:`mfrec.serve.bodies`), else 408. The app computes at most
  ``CONCURRENT_ANSWERS`` large answers at a time per worker, which bounds memory whatever the
  thread count; small ones are micro-batched (:mod:`mfrec.serve.batching`). Their ``timeout`` is a
  heartbeat of the worker's main loop, not a limit per request: a 100 MB batch body that takes
  minutes is not killed half way (SageMaker's own InvocationsTimeoutInSeconds still applies).
  Each worker picks its device and its torch thread count (CPU cores / workers) after the fork,
  because neither CUDA nor OpenMP thread pools survive a fork.
- SIGTERM (SageMaker stops a container with SIGTERM, then SIGKILL after 30 s) is gunicorn's
  graceful shutdown: stop accepting, finish in-flight requests for up to ``GRACEFUL_TIMEOUT``
  seconds, exit 0.
- Logs go to stderr, line-buffered, so CloudWatch gets them as they happen.

No nginx in front: SageMaker's own front end already buffers slow clients, and a proxy adds one
more body limit and one more timeout that must match ``MaxPayloadInMB`` (up to 100 MB) and the
model server's timeout; users' 413 and timeout failures with AWS's example container come from
exactly that. gunicorn alone reads bodies of any size up to the Flask limit (tests send 1 MB
and more, benchmarks/serving.py 4 MB bodies), and Server-Timing shows that HTTP is a small
share of a batch request.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

from gunicorn.app.base import BaseApplication

from mfrec.serve import devices
from mfrec.serve.app import create_app
from mfrec.serve.bodies import BodyDeadline
from mfrec.serve.recommender import Recommender
from mfrec.serve.settings import ServingSettings
from mfrec.serve.tensors import shared_copy

logger = logging.getLogger(__name__)

GRACEFUL_TIMEOUT = 20  # seconds to finish in-flight requests after SIGTERM (< SageMaker's 30)
# A connection holds a thread only once its head and first 64 kB have come (WORKER_CLASS), and
# then for at most the body deadline (mfrec.serve.bodies): enough threads for many large bodies
# at once (docs/serving.md, "Slow clients"); the app computes at most
# mfrec.serve.app.CONCURRENT_ANSWERS large answers at a time whatever this is, and idle threads
# cost little memory.
THREADS_PER_WORKER = 128
KEEPALIVE = 20  # seconds; SageMaker's front end and `mfrec transform` reuse connections
# gunicorn's gthread worker, reading requests in its event loop before a thread takes them.
WORKER_CLASS = "mfrec.serve.workers.HeadFirstWorker"
# Seconds a worker's thread may hold the GIL while another waits for it (Python's default is
# 0.005). A micro-batch's leader takes the GIL back after every torch operation of its search;
# at 5 ms per wait behind the threads that parse and format requests, the batch that everyone
# waits for is the one held up. 8 clients, 1 worker, alternated 3 times at load 6-7: 187-230
# req/s at 5 ms, 199-239 at 1 ms, 199-262 at 0.2 ms (benchmarks/NOTES.md, "Session 7").
SWITCH_INTERVAL = 0.0002


class _Gunicorn(BaseApplication):
    """gunicorn driven from Python: no command line, no config file, no shell."""

    def __init__(self, app, options: dict) -> None:
        self._app = app
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            if key in self.cfg.settings:  # settings newer than the installed gunicorn are skipped
                self.cfg.set(key, value)

    def load(self):
        return self._app


def gunicorn_options(settings: ServingSettings, recommender: Recommender, host: str) -> dict:
    """The gunicorn configuration for ``settings``."""
    threads = settings.torch_threads or max(1, (os.cpu_count() or 1) // settings.workers)

    def post_fork(server, worker) -> None:
        import torch

        # Until gunicorn installs the worker's handlers, a SIGTERM would be queued for the
        # master's loop, which a worker never runs: the worker would ignore it and delay the
        # shutdown by GRACEFUL_TIMEOUT. A booting worker has nothing to drain: let it die.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        torch.set_num_threads(threads)
        sys.setswitchinterval(SWITCH_INTERVAL)
        # Deadlines of requests read in the worker's event loop (mfrec.serve.workers).
        worker.header_timeout = settings.header_timeout
        worker.body_grace = settings.body_timeout
        worker.max_body_bytes = settings.max_payload_mb * 2**20
        # The user index is built while the worker already answers /ping (a second or more
        # for a million users); requests that need it wait for it.
        recommender.index_users_in_background()
        recommender.index_in_background = True  # the approximate index too, if one is wanted
        # Worker slot i serves from cuda:(i % GPUs), falls back to the CPU on an allocation
        # failure, and logs its device (mfrec.serve.devices).
        devices.place_worker(recommender, getattr(worker, "mfrec_slot", worker.age - 1))

    options = {
        "bind": f"{host}:{settings.port}",
        "workers": settings.workers,
        "worker_class": WORKER_CLASS,
        "threads": THREADS_PER_WORKER,
        "timeout": settings.timeout,
        "graceful_timeout": GRACEFUL_TIMEOUT,
        "keepalive": KEEPALIVE,
        "preload_app": True,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "mfrec-serve",
        "pre_fork": devices.assign_slot,
        "post_fork": post_fork,
        "control_socket_disable": True,  # gunicorn >= 24 would open a socket under $HOME
    }
    if os.path.isdir("/dev/shm"):  # heartbeat files off the container's overlay disk
        options["worker_tmp_dir"] = "/dev/shm"
    return options


def serve(
    model_dir: str | os.PathLike,
    host: str = "0.0.0.0",
    port: int | None = None,
    workers: int | None = None,
    settings: ServingSettings | None = None,
    artifact=None,
) -> None:
    """Load the model in ``model_dir``, then serve it with gunicorn until SIGTERM (does not
    return). ``mfrec serve`` passes ``--model-dir``, else ``$SAGEMAKER_BASE_DIR/model``, and
    ``artifact``: a future of the model it started loading before the imports (its result, or
    its exception, is taken here), or None to load it now."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=True)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    settings = settings or ServingSettings.from_env()
    settings = replace(settings, port=port or settings.port, workers=workers or settings.workers)
    model_dir = Path(model_dir)
    started = time.perf_counter()
    options = settings.recommender_options()
    if artifact is None:
        recommender = Recommender.from_dir(model_dir, settings.device, **options)
    else:
        recommender = Recommender(artifact.result(), settings.device, **options)
    logger.info(
        "loaded %s (%d users x %d items) in %.1f s; %d workers on port %d",
        model_dir,
        recommender.num_users,
        recommender.num_items,
        time.perf_counter() - started,
        settings.workers,
        settings.port,
    )
    if devices.all_on_cpu(settings.device):
        # Every request reads all item vectors: from an anonymous copy in huge pages, made here
        # before the fork and shared copy-on-write by the workers, faster than from the file.
        artifact = recommender.artifact
        artifact.item_embeddings = shared_copy(artifact.item_embeddings)
    app = create_app(recommender, settings=settings)
    # Bodies are read against a deadline before the app runs (slow clients, mfrec.serve.bodies).
    app = BodyDeadline(app, settings.max_payload_mb * 2**20, grace_seconds=settings.body_timeout)
    gc.freeze()  # objects made so far are never collected: their pages stay shared after fork
    _Gunicorn(app, gunicorn_options(settings, recommender, host)).run()
