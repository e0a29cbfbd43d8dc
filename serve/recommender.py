"""Answers to recommendation requests from a trained model artifact, vectorised on a torch device.

:meth:`Recommender.answer` takes :class:`~mfrec.serve.requests.Request` records of any type,
groups them by type and answers each group in one batch: known users are scored with one matrix
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

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mfrec.serve.catalog import SCORE_DECIMALS, Catalog, FilterError
from mfrec.serve.requests import SIMILARITIES, Recommendation, Request
from mfrec.serve.scoring import CoOccurrence, Masks, TopK, csr_pairs, top_k_masked
from mfrec.serve.tensors import FOLD_IN_METHODS, ModelTensors
from mfrec.train.artifact import TRENDING, ModelArtifact, load
from mfrec.train.device import resolve_device
from mfrec.train.errors import ConfigError

logger = logging.getLogger(__name__)

UNKNOWN_CHOICES = ("popular", "error")
UNKNOWN_USER_CHOICES = UNKNOWN_CHOICES
_EMPTY = np.empty(0, dtype=np.int64)


@dataclass
class _Job:
    """One request on its way through a top-k search."""

    position: int
    top_n: int
    banned: np.ndarray
    allowed: np.ndarray | None
    note: str | None = None


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
        fold_in_confidence: float = 40.0,
        fold_in_regularization: float = 0.1,
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
        self.item_ids = self.catalog.item_ids
        self.user_index = {user_id: idx for idx, user_id in enumerate(artifact.user_ids.tolist())}
        self._handlers = {
            "user": self._answer_users,
            "history": self._answer_history,
            "similar_items": self._answer_similar,
            "rank": self._answer_rank,
            "popular": self._answer_lists,
            "trending": self._answer_lists,
        }
        self._t: ModelTensors | None = None
        self._cooccurrence: CoOccurrence | None = None
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

    @property
    def request_types(self) -> tuple[str, ...]:
        return tuple(self._handlers)

    def warm_up(self) -> None:
        """Pick the device, move the embeddings there and answer one request (first-call costs)."""
        if self.num_users:
            self._answer_users([Request(user_id=str(self.artifact.user_ids[0]))])
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
        """Answer requests of any type, in order; each type is answered as one batch."""
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

    # -- steps shared by the request types ------------------------------------------------

    def _prepare(
        self, request: Request, top_n: int | None = None, seen: bool = True
    ) -> _Job | Recommendation:
        """The request's top_n and filter masks (with the user's seen items unless ``seen`` is
        False), or the error answer."""
        top_n = top_n or (self.default_top_n if request.top_n is None else request.top_n)
        if not 1 <= top_n <= self.max_top_n:
            return Recommendation.failed(
                f"top_n={top_n} is out of range; use 1 to {self.max_top_n}"
            )
        try:
            banned, allowed = (
                self.catalog.masks(request.filters) if request.filters else (_EMPTY, None)
            )
        except FilterError as exc:
            return Recommendation.failed(str(exc))
        if seen and self._excludes(request) and request.user_id in self.user_index:
            user = self.user_index[request.user_id]
            banned = np.concatenate([banned, self.artifact.seen_items(user)])
        return _Job(-1, top_n, banned, allowed)

    def _excludes(self, request: Request) -> bool:
        if request.type in ("rank", "similar_items", "popular", "trending"):
            return bool(request.exclude_seen)  # only when asked: a list or an item was named
        return self.exclude_seen if request.exclude_seen is None else request.exclude_seen

    def _fallback(self, problem: str, job: _Job) -> Recommendation:
        """The answer when the model knows nothing to start from: the popularity list (with
        ``problem`` as its note), or ``problem`` as an error."""
        if self.unknown_user == "error":
            return Recommendation.failed(problem)
        idx, counts = self.catalog.best_of_list("popular", job.top_n, job.banned, job.allowed)
        return Recommendation(self.item_ids[idx], counts, f"{problem}: most popular items")

    def _search(self, engine: TopK, queries, jobs: list[_Job], masks: Masks, offsets=None):
        """One top-k search for all ``jobs``; answers in job order."""
        k = max(job.top_n for job in jobs)
        items, scores = engine.search(queries, k, masks, offsets)
        return [
            self._row(item_row, score_row, job)
            for item_row, score_row, job in zip(items, scores, jobs, strict=True)
        ]

    def _row(self, item_row: np.ndarray, score_row: np.ndarray, job: _Job) -> Recommendation:
        keep = min(job.top_n, int(np.isfinite(score_row).sum()))  # -inf: masked items
        scores = np.round(score_row[:keep], SCORE_DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0
        return Recommendation(self.item_ids[item_row[:keep]], scores, job.note)

    @staticmethod
    def _masks(jobs: list[_Job]) -> Masks:
        return Masks.from_lists([j.banned for j in jobs], [j.allowed for j in jobs])

    # -- request types --------------------------------------------------------------------

    def _answer_users(self, requests: Sequence[Request]) -> list[Recommendation]:
        results: list = [None] * len(requests)
        jobs, users = [], []
        for position, request in enumerate(requests):
            job = self._prepare(request, seen=False)  # seen items: one vectorised CSR mask
            user = self.user_index.get(request.user_id)
            if isinstance(job, Recommendation):
                results[position] = job
            elif user is None:
                results[position] = self._fallback(
                    f"user {request.user_id!r} is not in the model", job
                )
            else:
                job.position = position
                jobs.append(job)
                users.append(user)
        if jobs:
            t = self._tensors()
            user_idx = np.array(users, dtype=np.int64)
            excluding = np.flatnonzero([self._excludes(requests[j.position]) for j in jobs])
            a = self.artifact
            positions, seen = csr_pairs(a.seen_indptr, a.seen_indices, user_idx[excluding])
            masks = self._masks(jobs).plus(excluding[positions], seen)
            rows = t.indices(user_idx)
            answers = self._search(
                t.scores, t.user_embeddings[rows], jobs, masks, t.user_biases[rows]
            )
            for job, answer in zip(jobs, answers, strict=True):
                results[job.position] = answer
        return results

    def _answer_history(self, requests: Sequence[Request]) -> list[Recommendation]:
        results: list = [None] * len(requests)
        jobs, histories, users = [], [], []
        for position, request in enumerate(requests):
            job = self._prepare(request)
            history, unknown = self.catalog.indices(request.history or ())
            user = self.user_index.get(request.user_id)
            if isinstance(job, Recommendation):
                results[position] = job
            elif not len(history) and user is None:
                results[position] = self._fallback("no item of the history is in the model", job)
            else:
                job.position, job.banned = position, np.concatenate([job.banned, history])
                if unknown:
                    job.note = f"history items not in the model were ignored: {unknown[:5]}"
                jobs.append(job)
                histories.append(history)
                users.append(-1 if user is None else user)
        if jobs:
            t = self._tensors()
            users = t.indices(users)
            vectors = t.fold_in(
                histories,
                users,
                self.fold_in_method,
                self.fold_in_confidence,
                self.fold_in_regularization,
            )
            biases = t.user_biases[users.clamp(min=0)] * (users >= 0)
            answers = self._search(t.scores, vectors, jobs, self._masks(jobs), biases)
            for job, answer in zip(jobs, answers, strict=True):
                results[job.position] = answer
        return results

    def _answer_similar(self, requests: Sequence[Request]) -> list[Recommendation]:
        results: list = [None] * len(requests)
        groups: dict[str, tuple[list[_Job], list[int]]] = {name: ([], []) for name in SIMILARITIES}
        for position, request in enumerate(requests):
            job = self._prepare(request)
            item = self.catalog.index.get(request.item_id)
            similarity = request.similarity or "embedding"
            if isinstance(job, Recommendation):
                results[position] = job
            elif similarity not in SIMILARITIES:
                results[position] = Recommendation.failed(
                    f"similarity {similarity!r} is not known; use one of {SIMILARITIES}"
                )
            elif item is None:
                results[position] = self._fallback(
                    f"item {request.item_id!r} is not in the model", job
                )
            else:
                job.position, job.banned = position, np.append(job.banned, item)
                groups[similarity][0].append(job)
                groups[similarity][1].append(item)
        t = self._tensors() if any(jobs for jobs, _ in groups.values()) else None
        jobs, items = groups["embedding"]
        if jobs:
            queries = t.cosine.keys[t.indices(items)]
            for job, answer in zip(
                jobs, self._search(t.cosine, queries, jobs, self._masks(jobs)), strict=True
            ):
                results[job.position] = answer
        for job, item in zip(*groups["cooccurrence"], strict=True):
            results[job.position] = self._cooccurring(item, job)
        return results

    def _cooccurring(self, item: int, job: _Job) -> Recommendation:
        if self._cooccurrence is None:
            a = self.artifact
            self._cooccurrence = CoOccurrence(a.seen_indptr, a.seen_indices, self.num_items)
        similarities = torch.from_numpy(self._cooccurrence.similarities(item))
        similarities[similarities <= 0] = -torch.inf  # never seen together: not similar
        masks = Masks.from_lists([job.banned], [job.allowed])
        values, winners = top_k_masked(similarities[None].float(), job.top_n, masks)
        return self._row(winners[0].numpy(), values[0].double().numpy(), job)

    def _answer_rank(self, requests: Sequence[Request]) -> list[Recommendation]:
        """The given items re-ordered for each user; one gather-and-dot for all known users."""
        results: list = [None] * len(requests)
        jobs, candidates, unknowns, users = [], [], [], []
        for position, request in enumerate(requests):
            wanted = list(dict.fromkeys(request.item_ids or ()))
            job = self._prepare(
                request, top_n=request.top_n or min(len(wanted) or 1, self.max_top_n)
            )
            if isinstance(job, Recommendation):
                results[position] = job
                continue
            idx, unknown = self.catalog.indices(wanted)
            allowed = np.isin(idx, job.allowed) if job.allowed is not None else True
            job.position = position
            jobs.append(job)
            candidates.append(idx[~np.isin(idx, job.banned) & allowed])
            unknowns.append(unknown)
            users.append(self.user_index.get(request.user_id, -1))
        if not jobs:
            return results
        scores = self._tensors().pair_scores(np.array(users, dtype=np.int64), candidates)
        for job, idx, unknown, user, score in zip(
            jobs, candidates, unknowns, users, scores, strict=True
        ):
            note = None
            if user < 0:  # no known user: popularity order
                score = self.catalog.counts("popular")[idx]
                if requests[job.position].user_id is not None:
                    note = "user not in the model: ranked by popularity"
            if unknown:
                note = f"items not in the model, placed last: {unknown[:5]}"
            order = np.argsort(-score, kind="stable")
            ids = np.concatenate([self.item_ids[idx[order]], np.array(unknown, dtype=object)])
            score = np.concatenate(
                [np.round(score[order], SCORE_DECIMALS) + 0.0, np.full(len(unknown), np.nan)]
            )
            results[job.position] = Recommendation(ids[: job.top_n], score[: job.top_n], note)
        return results

    def _answer_lists(self, requests: Sequence[Request]) -> list[Recommendation]:
        results = []
        for request in requests:
            job = self._prepare(request)
            if isinstance(job, Recommendation):
                results.append(job)
            elif not self.catalog.has_list(request.type):
                results.append(
                    Recommendation.failed(
                        f"this model has no {request.type} counts (artifact extra {TRENDING!r});"
                        " retrain it with this mfrec version, or ask for popular items"
                    )
                )
            else:
                idx, counts = self.catalog.best_of_list(
                    request.type, job.top_n, job.banned, job.allowed
                )
                results.append(Recommendation(self.item_ids[idx], counts))
        return results

    def _tensors(self) -> ModelTensors:
        if self._t is None:
            self.device = resolve_device(self.device_spec)
            self._t = ModelTensors(self.artifact, self.device)
        return self._t
