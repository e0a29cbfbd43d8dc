"""The server's settings, read once from the environment.

Deployment options come from environment variables, read once by :meth:`ServingSettings.from_env`:

=========================================  ============  =====================================
variable                                   default       meaning
=========================================  ============  =====================================
``MFREC_EXCLUDE_SEEN``                     ``true``      leave out the user's training items
``MFREC_DEFAULT_TOP_N``                    ``25``        ``top_n`` of a record that gives none
``MFREC_MAX_TOP_N``                        ``500``       largest ``top_n`` accepted
``MFREC_UNKNOWN_USER``                     ``popular``   ``popular`` list or ``error`` row
``MFREC_MAX_RESPONSE_MB``                  ``100``       response size beyond which records
                                                         get error rows (estimated)
``MFREC_DEVICE``                           ``auto``      ``auto``, ``cpu``, ``cuda``, ``cuda:N``
``MFREC_FOLD_IN``                          ``als``       ``als`` or ``mean``: fresh histories
``MFREC_BODY_TIMEOUT``                     ``10``        seconds a body may take, plus one
                                                         per 64 kB received (else 408)
``MFREC_HEADER_TIMEOUT``                   ``10``        seconds from a request's first byte
                                                         to the end of its headers (else 408)
``MFREC_TORCH_THREADS``                    CPUs/workers  torch threads per worker
``MFREC_BATCH_WAIT_MS``                    ``2``         longest wait of a micro-batch for
                                                         concurrent requests (0: none)
``SAGEMAKER_BATCH``                        ``false``     batch transform: never answer 400
``SAGEMAKER_MAX_PAYLOAD_IN_MB``            6 (limit)     body limit (413 above), 0 (= 100) to
                                           1 (batch)     100; MaxPayloadInMB advertised (1 unset)
``SAGEMAKER_BATCH_STRATEGY``               MULTI_RECORD  advertised by /execution-parameters
``SAGEMAKER_MAX_CONCURRENT_TRANSFORMS``    workers       advertised by /execution-parameters
``SAGEMAKER_MODEL_SERVER_WORKERS``         2 per GPU,    gunicorn workers (or
                                           else CPUs     ``MODEL_SERVER_WORKERS``)
``SAGEMAKER_MODEL_SERVER_TIMEOUT``         ``60``        seconds (or ``MODEL_SERVER_TIMEOUT``)
``SAGEMAKER_BIND_TO_PORT``                 ``8080``      port
=========================================  ============  =====================================

Why ``exclude_seen`` defaults to true: implicit feedback says what a user already consumed, and
recommending it back is rarely wanted; Amazon Personalize's offline metrics and mfrec's own
(BENCHMARKS.md, protocol Q) rank items *excluding* the training items, so the default makes the
server return what was measured. The seed's container did not exclude them: set
``MFREC_EXCLUDE_SEEN=false`` (or ``"exclude_seen": false`` per record) to reproduce it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from mfrec.serve.devices import default_workers
from mfrec.serve.recommender import UNKNOWN_USER_CHOICES
from mfrec.serve.strategies import STRATEGIES, strategy_name
from mfrec.serve.tensors import FOLD_IN_METHODS
from mfrec.train.config import parse_bool
from mfrec.train.errors import ConfigError


def _env(environ: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


def _env_int(environ, names, default: int, low: int, high: int) -> int:
    text = _env(environ, *names)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ConfigError(f"{names[0]}={text!r} must be an integer from {low} to {high}")
    return value


def _choice(environ, name: str, choices: tuple[str, ...], default: str) -> str:
    value = (_env(environ, name) or default).lower()
    if value not in choices:
        raise ConfigError(f"{name}={value!r}; use one of {', '.join(choices)}")
    return value


def _env_bool(environ, name: str, default: bool) -> bool:
    text = _env(environ, name) or str(default)
    if (value := parse_bool(text)) is None:
        raise ConfigError(f"{name}={text!r} must be true or false")
    return value


@dataclass(frozen=True)
class ServingSettings:
    """Deployment options (see the module docstring for the environment variables)."""

    exclude_seen: bool = True
    default_top_n: int = 25
    max_top_n: int = 500
    unknown_user: str = "popular"
    device: str = "auto"
    fold_in: str = "als"
    batch: bool = False
    max_payload_mb: int = 6
    batch_payload_mb: int = 1
    batch_strategy: str = "MULTI_RECORD"
    max_concurrent_transforms: int | None = None
    workers: int = 1
    timeout: int = 60
    port: int = 8080
    max_response_mb: int = 100
    batch_wait_ms: int = 2
    torch_threads: int | None = None
    body_timeout: int = 10
    header_timeout: int = 10

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServingSettings:
        env = os.environ if environ is None else environ
        strategy = _env(env, "SAGEMAKER_BATCH_STRATEGY") or "MULTI_RECORD"
        if strategy_name(strategy) is None:
            raise ConfigError(
                f"SAGEMAKER_BATCH_STRATEGY={strategy!r}; use MULTI_RECORD or SINGLE_RECORD"
            )
        payload = _env_int(env, ("SAGEMAKER_MAX_PAYLOAD_IN_MB",), 0, 0, 100)
        payload = 100 if _env(env, "SAGEMAKER_MAX_PAYLOAD_IN_MB") and not payload else payload
        workers = ("SAGEMAKER_MODEL_SERVER_WORKERS", "MODEL_SERVER_WORKERS")
        concurrent = ("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS",)
        return cls(
            exclude_seen=_env_bool(env, "MFREC_EXCLUDE_SEEN", True),
            default_top_n=_env_int(env, ("MFREC_DEFAULT_TOP_N",), 25, 1, 10_000),
            max_top_n=_env_int(env, ("MFREC_MAX_TOP_N",), 500, 1, 100_000),
            unknown_user=_choice(env, "MFREC_UNKNOWN_USER", UNKNOWN_USER_CHOICES, "popular"),
            max_response_mb=_env_int(env, ("MFREC_MAX_RESPONSE_MB",), 100, 1, 4096),
            batch_wait_ms=_env_int(env, ("MFREC_BATCH_WAIT_MS",), 2, 0, 1000),
            body_timeout=_env_int(env, ("MFREC_BODY_TIMEOUT",), 10, 1, 3600),
            header_timeout=_env_int(env, ("MFREC_HEADER_TIMEOUT",), 10, 1, 3600),
            torch_threads=_env_int(env, ("MFREC_TORCH_THREADS",), 0, 0, 1024) or None,
            device=_env(env, "MFREC_DEVICE") or "auto",
            fold_in=_choice(env, "MFREC_FOLD_IN", FOLD_IN_METHODS, "als"),
            batch=_env_bool(env, "SAGEMAKER_BATCH", False),
            max_payload_mb=payload or 6,
            batch_payload_mb=payload or 1,
            batch_strategy=STRATEGIES[strategy_name(strategy)],
            max_concurrent_transforms=_env_int(env, concurrent, 0, 0, 1000) or None,
            workers=_env_int(env, workers, default_workers(), 1, 1000),
            timeout=_env_int(
                env, ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "MODEL_SERVER_TIMEOUT"), 60, 1, 86_400
            ),
            port=_env_int(env, ("SAGEMAKER_BIND_TO_PORT",), 8080, 1, 65_535),
        )

    def recommender_options(self) -> dict:
        return {
            "exclude_seen": self.exclude_seen,
            "unknown_user": self.unknown_user,
            "default_top_n": self.default_top_n,
            "max_top_n": self.max_top_n,
            "fold_in_method": self.fold_in,
            "batch_wait_seconds": self.batch_wait_ms / 1000,
        }

    def execution_parameters(self) -> dict:
        """What SageMaker batch transform should send: one request per worker at a time, in
        bodies of ``batch_payload_mb`` (1 MB, about 27,000 seed records, unless the job set
        SAGEMAKER_MAX_PAYLOAD_IN_MB): big enough to make HTTP negligible, small enough that a
        file gives every worker bodies to score in parallel (one 6 MB body would keep all
        but one worker idle)."""
        return {
            "MaxConcurrentTransforms": self.max_concurrent_transforms or self.workers,
            "BatchStrategy": self.batch_strategy,
            "MaxPayloadInMB": self.batch_payload_mb,
        }
