"""The skeleton every request type follows (:class:`Handler`), and the :class:`Job` it makes of
each request.

For a batch of requests of one type (:meth:`Handler.__call__`): each request becomes a
:class:`Job` (its ``top_n``, its filters as banned and allowed items, its user) or, when those
cannot be read, an error answer; :meth:`Handler.admit` answers the requests that need no batch
(an error, the popularity fallback for a user or item the model does not know, a per-request
list) and completes the others; :meth:`Handler.run` answers all those in one batch. The handler
of each type (:mod:`mfrec.serve.handlers`) only says what differs for its type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from mfrec.serve.catalog import SCORE_DECIMALS, FilterError
from mfrec.serve.requests import Recommendation, Request
from mfrec.serve.scoring import Masks, TopK

if TYPE_CHECKING:
    from mfrec.serve.recommender import Recommender

_EMPTY = np.empty(0, dtype=np.int64)


@dataclass
class Job:
    """One request on its way through a batch.

    Attributes
    ----------
    request : Request
    top_n : int
    banned : ndarray of item indices that are never returned
    allowed : ndarray of item indices or None; when set, only these may be returned
    user_idx : int
        The request's user, -1 when it names none or one the model does not know.
    items : ndarray of item indices
        The known items the request names: a history, the items to rank, the item to match.
    unknown : list of str
        The item ids the request names that the model does not know.
    note : str or None
        Said with the answer (see :class:`Recommendation`).
    """

    request: Request
    top_n: int
    banned: np.ndarray
    allowed: np.ndarray | None
    user_idx: int = -1
    items: np.ndarray = field(default_factory=lambda: _EMPTY)
    unknown: list[str] = field(default_factory=list)
    note: str | None = None


class Refused(ValueError):
    """A request that cannot become a job (its ``top_n``, its filters); it gets an error answer."""


def job_masks(jobs: Sequence[Job]) -> Masks:
    """The banned and allowed items of each job, as masks of the rows of one search."""
    return Masks.from_lists([job.banned for job in jobs], [job.allowed for job in jobs])


class Handler:
    """The skeleton shared by the request types; subclasses override what differs.

    Parameters
    ----------
    recommender : Recommender
        Its options, catalogue, user index and (on first use) tensors.
    """

    #: Leave out the user's training items unless the request says: true when the answer is
    #: about the user; false when a list or an item was named (only when asked).
    excludes_seen_by_default = False
    #: Add the user's training items to each job's banned items (users: one CSR mask instead).
    bans_seen_per_job = True

    def __init__(self, recommender: Recommender) -> None:
        self.rec = recommender

    def __call__(self, requests: Sequence[Request]) -> list[Recommendation]:
        """Answers to ``requests`` (all of this handler's type), in order."""
        results: list[Recommendation | None] = [None] * len(requests)
        jobs, positions = [], []
        for position, request in enumerate(requests):
            try:
                job = self.job(request)
            except Refused as exc:
                results[position] = Recommendation.failed(str(exc))
                continue
            results[position] = self.admit(job)
            if results[position] is None:
                jobs.append(job)
                positions.append(position)
        if jobs:
            for position, answer in zip(positions, self.run(jobs), strict=True):
                results[position] = answer
        return results  # type: ignore[return-value]

    # -- what a request type may change -----------------------------------------------------

    def top_n(self, request: Request) -> int:
        """How many items the answer may hold."""
        return self.rec.default_top_n if request.top_n is None else request.top_n

    def admit(self, job: Job) -> Recommendation | None:
        """The answer when the job needs no batch; else None, with the job completed."""
        return None

    def run(self, jobs: list[Job]) -> list[Recommendation]:
        """The answers to admitted jobs, in job order, computed together."""
        raise NotImplementedError(f"{type(self).__name__} answers every request in admit()")

    # -- steps shared by the request types ----------------------------------------------------

    def job(self, request: Request) -> Job:
        """The request's top_n, filter masks and user (see :attr:`bans_seen_per_job`)."""
        rec = self.rec
        top_n = self.top_n(request)
        if not 1 <= top_n <= rec.max_top_n:
            raise Refused(f"top_n={top_n} is out of range; use 1 to {rec.max_top_n}")
        try:
            banned, allowed = (
                rec.catalog.masks(request.filters) if request.filters else (_EMPTY, None)
            )
        except FilterError as exc:
            raise Refused(str(exc)) from exc
        user_idx = -1 if request.user_id is None else rec.user_index.get(request.user_id, -1)
        if self.bans_seen_per_job and user_idx >= 0 and self.excludes_seen(request):
            banned = np.concatenate([banned, rec.artifact.seen_items(user_idx)])
        return Job(request, top_n, banned, allowed, user_idx)

    def excludes_seen(self, request: Request) -> bool:
        """Whether the user's training items are left out of the answer."""
        if request.exclude_seen is not None:
            return request.exclude_seen
        return self.rec.exclude_seen and self.excludes_seen_by_default

    def fallback(self, problem: str, job: Job) -> Recommendation:
        """The answer when the model knows nothing to start from: the popularity list (with
        ``problem`` as its note), or ``problem`` as an error."""
        if self.rec.unknown_user == "error":
            return Recommendation.failed(problem)
        catalog = self.rec.catalog
        idx, counts = catalog.best_of_list("popular", job.top_n, job.banned, job.allowed)
        return Recommendation(catalog.item_ids[idx], counts, f"{problem}: most popular items")

    def search(
        self, engine: TopK, queries: torch.Tensor, jobs: list[Job], masks: Masks, offsets=None
    ) -> list[Recommendation]:
        """One top-k search for all ``jobs`` (query row r for ``jobs[r]``); answers in order."""
        k = max(job.top_n for job in jobs)
        items, scores = engine.search(queries, k, masks, offsets)
        return [
            self.answer_row(item_row, score_row, job)
            for item_row, score_row, job in zip(items, scores, jobs, strict=True)
        ]

    def answer_row(self, item_row: np.ndarray, score_row: np.ndarray, job: Job) -> Recommendation:
        """A job's answer from its top-k row; ``-inf`` scores are masked items, dropped."""
        keep = min(job.top_n, int(np.isfinite(score_row).sum()))
        scores = np.round(score_row[:keep], SCORE_DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0
        return Recommendation(self.rec.catalog.item_ids[item_row[:keep]], scores, job.note)
