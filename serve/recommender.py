"""Answers to recommendation requests from a trained model artifact, vectorised on a torch device.

:meth:`Recommender.answer` takes :class:`~mfrec.serve.requests.Request` records of any type,
groups them by type and gives each group to its type's handler (:mod:`mfrec.serve.handlers`),
which answers it in one batch: known users are scored with one matrix
product and one top-k per chunk of rows (:class:`~mfrec.serve.scoring.TopK`), their training
items masked through the artifact's CSR arrays; fresh histories are folded into user vectors
first; similar items use the item embeddings (cosine) or training co-occurrence. A user or item
the model does not know gets the popularity list (as Amazon Personalize does, with a note) or an
error answer, as configured.

Torch tensors are built on first use, not in ``__init__``: the server loads the artifact in the
gunicorn master (workers share its memory copy-on-write) and each worker then picks its device
itself, because CUDA cannot be started before a fork.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Sequence

import numpy as np
import torch

from mfrec.serve.ann import AnnSettings, ApproximateTopK
from mfrec.serve.batching import WAIT_SECONDS, MicroBatcher
from mfrec.serve.catalog import Catalog
from mfrec.serve.handlers import HANDLERS
from mfrec.serve.requests import REQUEST_TYPES, Recommendation, Request
from mfrec.serve.scoring import Masks
from mfrec.serve.tensors import FOLD_IN_METHODS, ModelTensors
from mfrec.train.artifact import ModelArtifact, load
from mfrec.train.device import resolve_device
from mfrec.train.errors import ConfigError

logger = logging.getLogger(__name__)

UNKNOWN_CHOICES = ("popular", "error")
UNKNOWN_USER_CHOICES = UNKNOWN_CHOICES


class Recommender:
    """Answers recommendation requests from a :class:`ModelArtifact`.

    Parameters
    ----------
    artifact : ModelArtifact
    device : str or torch.device
        ``"auto"`` (CUDA when it starts, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``;
        resolved on first use.
    exclude_seen : bool
        Default for requests that do not say: leave out the user's training items.
    unknown_user : {"popular", "error"}
        A user (or, for similar items, an item) absent from training gets the popularity list,
        as Amazon Personalize does, or an error answer.
    default_top_n, max_top_n : int
        ``top_n`` of a request that gives none, and the largest one accepted.
    fold_in_method : {"als", "mean"}
        How a fresh history becomes a user vector (:meth:`ModelTensors.fold_in`).
    batch_wait_seconds : float
        How long a micro-batch may wait for concurrent requests
        (:class:`~mfrec.serve.batching.MicroBatcher`).
    ann : AnnSettings or None
        When ``user`` and ``history`` requests search an approximate index
        (:mod:`mfrec.serve.ann`); None: from ``MFREC_ANN`` and ``MFREC_ANN_MIN_ITEMS``.
    fold_in_confidence, fold_in_regularization : float
        Weight of a history item, and pull towards the prior (relative to the mean eigenvalue of
        ``V'V``), in :func:`~mfrec.serve.scoring.fold_in`. The defaults (ALS, 40, 0.1) ranked
        best on a validation split of MovieLens 100K for a model trained with the default
        hyperparameters (benchmarks/serving_quality.py).
    """

    def __init__(
        self,
        artifact: ModelArtifact,
        device: str | torch.device = "auto",
        *,
        exclude_seen: bool = True,
        unknown_user: str = "popular",
        default_top_n: int = 25,
        max_top_n: int = 500,
        fold_in_method: str = "als",
        batch_wait_seconds: float = WAIT_SECONDS,
        fold_in_confidence: float = 40.0,
        fold_in_regularization: float = 0.1,
        ann: AnnSettings | None = None,
    ) -> None:
        if unknown_user not in UNKNOWN_CHOICES:
            raise ConfigError(f"unknown_user={unknown_user!r}; use one of {UNKNOWN_CHOICES}")
        if fold_in_method not in FOLD_IN_METHODS:
            raise ConfigError(f"fold_in_method={fold_in_method!r}; use one of {FOLD_IN_METHODS}")
        if not 1 <= default_top_n <= max_top_n:
            raise ConfigError(
                f"default_top_n={default_top_n} must be between 1 and max_top_n={max_top_n}"
            )
        self.artifact = artifact
        self.device_spec = device
        self.exclude_seen, self.unknown_user = exclude_seen, unknown_user
        self.default_top_n, self.max_top_n = default_top_n, max_top_n
        self.fold_in_method = fold_in_method
        self.fold_in_confidence, self.fold_in_regularization = (
            fold_in_confidence,
            fold_in_regularization,
        )
        self.catalog = Catalog(artifact)
        self.ann = ann if ann is not None else AnnSettings.from_env()
        self.item_ids = self.catalog.item_ids
        self._user_index: dict[str, int] | None = None  # built on first use (user_index)
        self._user_index_lock = threading.Lock()
        self._handlers = {name: HANDLERS[name](self) for name in REQUEST_TYPES}
        # Concurrent calls of answer() (a worker's threads) are answered together.
        self._batcher = MicroBatcher(self.answer_together, wait_seconds=batch_wait_seconds)
        self._tensors: ModelTensors | None = None
        # A server's worker builds the approximate index on a thread (exact search until it is
        # ready): a million items take minutes, more than gunicorn's boot timeout.
        self.index_in_background = False
        self.device: torch.device | None = None

    @classmethod
    def from_dir(cls, model_dir: str | os.PathLike, device="auto", **options) -> Recommender:
        """A recommender for the model saved in ``model_dir`` (see :func:`artifact.load`)."""
        return cls(load(model_dir), device, **options)

    @property
    def num_users(self) -> int:
        return self.artifact.num_users

    @property
    def num_items(self) -> int:
        return self.artifact.num_items

    @functools.cached_property
    def item_id_length(self) -> int:
        """Characters of the longest item id."""
        return max(map(len, self.item_ids.tolist()), default=0)

    def answer_rows(self, request: Request) -> int:
        """How many items the answer to ``request`` may hold at most (0 when its ``top_n`` is
        out of range: it will be answered with an error)."""
        handler = self._handlers.get(request.type)
        top_n = handler.top_n(request) if handler is not None else 0
        return top_n if 1 <= top_n <= self.max_top_n else 0

    @property
    def user_index(self) -> dict[str, int]:
        """User id -> user index, built on first use: a million ids take a second or more,
        which the server spends after its port opened (:meth:`index_users_in_background`)
        rather than before the first ``/ping``."""
        if self._user_index is None:
            with self._user_index_lock:
                if self._user_index is None:
                    ids = self.artifact.user_ids.tolist()
                    self._user_index = {user_id: idx for idx, user_id in enumerate(ids)}
        return self._user_index

    def index_users_in_background(self) -> threading.Thread:
        """Build :attr:`user_index` on a thread; requests that need it wait for it."""
        thread = threading.Thread(target=lambda: self.user_index, name="user-index", daemon=True)
        thread.start()
        return thread

    @property
    def request_types(self) -> tuple[str, ...]:
        return REQUEST_TYPES

    def warm_up(self) -> None:
        """Pick the device, move the embeddings there and score one row against every item
        (the first call's costs), without what can wait until after a worker's first ``/ping``:
        the user index (:meth:`index_users_in_background`), the fold-in's Gram matrix (on the
        first fresh history)."""
        if self.num_items:
            tensors = self.tensors
            tensors.by_score.search(tensors.item_embeddings[:1], 1, Masks())
        logger.info("model on %s: %d users x %d items", self.device, self.num_users, self.num_items)

    def recommend(
        self,
        user_ids: Sequence[str],
        top_n: int | Sequence[int] | None = None,
        exclude_seen: bool | None = None,
    ) -> list[Recommendation]:
        """The best items for each user, all users scored together.

        Parameters
        ----------
        user_ids : sequence of str, length n
        top_n : int, or sequence of int of length n, or None (the default ``top_n``)
        exclude_seen : bool or None (the recommender's default)

        Returns
        -------
        list of n :class:`Recommendation`, each unpacking to ``(item_ids, scores)``
        """
        top_ns = [top_n] * len(user_ids) if top_n is None or np.isscalar(top_n) else top_n
        if len(top_ns) != len(user_ids):
            raise ValueError(f"top_n has {len(top_ns)} entries for {len(user_ids)} user_ids")
        return self.answer(
            [
                Request("user", u, top_n=n, exclude_seen=exclude_seen)
                for u, n in zip(user_ids, top_ns, strict=True)
            ]
        )

    def answer(self, requests: Sequence[Request]) -> list[Recommendation]:
        """Answer requests of any type, in order; each type is answered as one batch, together
        with the requests of other threads calling at the same time
        (:class:`~mfrec.serve.batching.MicroBatcher`)."""
        return self._batcher(requests)

    def answer_together(self, requests: Sequence[Request]) -> list[Recommendation]:
        """:meth:`answer` for these requests alone, on the calling thread."""
        results: list[Recommendation | None] = [None] * len(requests)
        positions: dict[str, list[int]] = {}
        for position, request in enumerate(requests):
            positions.setdefault(request.type, []).append(position)
        for request_type, where in positions.items():
            handler = self._handlers.get(request_type)
            if handler is None:
                error = (
                    f"request type {request_type!r} is not known; use one of {list(self._handlers)}"
                )
                answers = [Recommendation.failed(error)] * len(where)
            else:
                answers = handler([requests[p] for p in where])
            for position, answer in zip(where, answers, strict=True):
                results[position] = answer
        return results  # type: ignore[return-value]

    @property
    def tensors(self) -> ModelTensors:
        """The model's tensors on the recommender's device, built on first use (after a fork)."""
        if self._tensors is None:
            self.device = resolve_device(self.device_spec)
            tensors = ModelTensors(self.artifact, self.device)
            if self.ann.wanted(tensors.by_score.num_items):  # large catalogues: approximate
                if self.index_in_background:
                    threading.Thread(
                        target=_swap_in_index, args=(tensors,), name="ann-index", daemon=True
                    ).start()
                else:
                    tensors.by_score = ApproximateTopK.build(tensors.by_score)
            self._tensors = tensors
        return self._tensors


def _swap_in_index(tensors: ModelTensors) -> None:
    """Build the approximate index over ``tensors``' exact search and put it in its place;
    requests meanwhile search exactly, and keep doing so if the build fails."""
    started = time.perf_counter()
    try:
        tensors.by_score = ApproximateTopK.build(tensors.by_score)
    except Exception as exc:  # noqa: BLE001 - a failed index must not take the worker down
        logger.error("approximate index not built (%s); searching exactly", exc)
        return
    logger.info(
        "approximate index ready after %.1f s (pid %d); searched exactly until then",
        time.perf_counter() - started,
        os.getpid(),
    )
