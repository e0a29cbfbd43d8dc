"""How each request type is answered: one :class:`~mfrec.serve.jobs.Handler` per type of
:data:`~mfrec.serve.requests.REQUEST_TYPES` (:data:`HANDLERS`), each saying only what differs
from the shared skeleton.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from mfrec.serve.catalog import SCORE_DECIMALS
from mfrec.serve.exploration import Explorer
from mfrec.serve.jobs import Handler, Job, job_masks
from mfrec.serve.probabilities import calibrated
from mfrec.serve.requests import SIMILARITIES, Recommendation, Request
from mfrec.serve.scoring import CoOccurrence, csr_pairs, top_k_masked
from mfrec.train.artifact import TRENDING

if TYPE_CHECKING:
    from mfrec.serve.recommender import Recommender


class Exploring(Handler):
    """A handler whose answers may mix in cold items (:mod:`mfrec.serve.exploration`;
    ``MFREC_EXPLORATION_*`` read once, here)."""

    def __init__(self, recommender: Recommender) -> None:
        super().__init__(recommender)
        self.explorer = Explorer(recommender.artifact)


class UserHandler(Exploring):
    """Items for a known user: its trained vector against all items (:meth:`TopK.search`)."""

    excludes_seen_by_default = True
    bans_seen_per_job = False  # one vectorised CSR mask for the whole batch instead

    def admit(self, job: Job) -> Recommendation | None:
        if job.user_idx < 0:
            return self.fallback(f"user {job.request.user_id!r} is not in the model", job)
        return None

    def run(self, jobs: list[Job]) -> list[Recommendation]:
        tensors, artifact = self.rec.tensors, self.rec.artifact
        user_idx = np.array([job.user_idx for job in jobs], dtype=np.int64)
        excluding = np.flatnonzero([self.excludes_seen(job.request) for job in jobs])
        positions, seen = csr_pairs(
            artifact.seen_indptr, artifact.seen_indices, user_idx[excluding]
        )
        masks = job_masks(jobs).plus(excluding[positions], seen)
        rows = tensors.indices(user_idx)
        queries, offsets = tensors.user_embeddings[rows], tensors.user_biases[rows]
        answers = self.search(tensors.by_score, queries, jobs, masks, offsets)
        return self.explorer.mix(self, jobs, answers, queries, offsets)


class HistoryHandler(Exploring):
    """Items for a fresh history: folded into a user vector (:meth:`ModelTensors.fold_in`)."""

    excludes_seen_by_default = True

    def admit(self, job: Job) -> Recommendation | None:
        history, unknown = self.rec.catalog.indices(job.request.history or ())
        if not len(history) and job.user_idx < 0:
            return self.fallback("no item of the history is in the model", job)
        job.items, job.banned = history, np.concatenate([job.banned, history])
        if unknown:
            job.note = f"history items not in the model were ignored: {unknown[:5]}"
        return None

    def run(self, jobs: list[Job]) -> list[Recommendation]:
        rec, tensors = self.rec, self.rec.tensors
        users = tensors.indices([job.user_idx for job in jobs])
        vectors = tensors.fold_in(
            [job.items for job in jobs],
            users,
            rec.fold_in_method,
            rec.fold_in_confidence,
            rec.fold_in_regularization,
        )
        biases = tensors.user_biases[users.clamp(min=0)] * (users >= 0)
        answers = self.search(tensors.by_score, vectors, jobs, job_masks(jobs), biases)
        return self.explorer.mix(self, jobs, answers, vectors, biases)


class SimilarItemsHandler(Handler):
    """Items like an item: cosine of the item embeddings in one batch, or training
    co-occurrence (:class:`CoOccurrence`) one request at a time."""

    def __init__(self, recommender: Recommender) -> None:
        super().__init__(recommender)
        self._cooccurrence: CoOccurrence | None = None

    def admit(self, job: Job) -> Recommendation | None:
        request = job.request
        similarity = request.similarity or "embedding"
        if similarity not in SIMILARITIES:
            return Recommendation.failed(
                f"similarity {similarity!r} is not known; use one of {SIMILARITIES}"
            )
        item = self.rec.catalog.index.get(request.item_id)
        if item is None:
            return self.fallback(f"item {request.item_id!r} is not in the model", job)
        job.items, job.banned = np.array([item]), np.append(job.banned, item)
        return self._cooccurring(item, job) if similarity == "cooccurrence" else None

    def run(self, jobs: list[Job]) -> list[Recommendation]:
        engine = self.rec.tensors.by_cosine
        queries = engine.keys[self.rec.tensors.indices([job.items[0] for job in jobs])]
        return self.search(engine, queries, jobs, job_masks(jobs))

    def _cooccurring(self, item: int, job: Job) -> Recommendation:
        if self._cooccurrence is None:
            a = self.rec.artifact
            self._cooccurrence = CoOccurrence(a.seen_indptr, a.seen_indices, a.num_items)
        similarities = torch.from_numpy(self._cooccurrence.similarities(item))
        similarities[similarities <= 0] = -torch.inf  # never seen together: not similar
        values, winners = top_k_masked(similarities[None].float(), job.top_n, job_masks([job]))
        return self.answer_row(winners[0].numpy(), values[0].double().numpy(), job)


class RankHandler(Handler):
    """The given items re-ordered for a user: one gather-and-dot for all known users; without
    a known user, by popularity. Ties keep the order given; unknown items come last."""

    def top_n(self, request: Request) -> int:
        wanted = len(dict.fromkeys(request.item_ids or ()))
        return request.top_n or min(wanted or 1, self.rec.max_top_n)

    def admit(self, job: Job) -> Recommendation | None:
        idx, job.unknown = self.rec.catalog.indices(list(dict.fromkeys(job.request.item_ids or ())))
        allowed = np.isin(idx, job.allowed) if job.allowed is not None else True
        job.items = idx[~np.isin(idx, job.banned) & allowed]
        return None

    def run(self, jobs: list[Job]) -> list[Recommendation]:
        users = np.array([job.user_idx for job in jobs], dtype=np.int64)
        scores = self.rec.tensors.pair_scores(users, [job.items for job in jobs])
        return [self._ranked(job, score) for job, score in zip(jobs, scores, strict=True)]

    def _ranked(self, job: Job, scores: np.ndarray) -> Recommendation:
        catalog, note = self.rec.catalog, None
        if job.user_idx < 0:  # no known user: popularity order
            scores = catalog.counts("popular")[job.items]
            if job.request.user_id is not None:
                note = "user not in the model: ranked by popularity"
        if job.unknown:
            note = f"items not in the model, placed last: {job.unknown[:5]}"
        order = np.argsort(-scores, kind="stable")
        unknown = np.array(job.unknown, dtype=object)
        item_ids = np.concatenate([catalog.item_ids[job.items[order]], unknown])
        scores = np.concatenate(
            [np.round(scores[order], SCORE_DECIMALS) + 0.0, np.full(len(unknown), np.nan)]
        )
        return Recommendation(item_ids[: job.top_n], scores[: job.top_n], note)


class ListHandler(Handler):
    """The catalogue's most popular or trending items (the request's type), filtered."""

    def admit(self, job: Job) -> Recommendation | None:
        name, catalog = job.request.type, self.rec.catalog
        if not catalog.has_list(name):
            return Recommendation.failed(
                f"this model has no {name} counts (artifact extra {TRENDING!r});"
                " retrain it with this mfrec version, or ask for popular items"
            )
        idx, counts = catalog.best_of_list(name, job.top_n, job.banned, job.allowed)
        return Recommendation(catalog.item_ids[idx], counts)


#: The handler of each request type (keys: :data:`~mfrec.serve.requests.REQUEST_TYPES`);
#: Personalize-shaped requests also get [0, 1] scores (:mod:`mfrec.serve.probabilities`).
HANDLERS: dict[str, type[Handler]] = {
    name: calibrated(handler)
    for name, handler in {
        "user": UserHandler,
        "history": HistoryHandler,
        "similar_items": SimilarItemsHandler,
        "rank": RankHandler,
        "popular": ListHandler,
        "trending": ListHandler,
    }.items()
}
