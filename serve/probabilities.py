"""Scores a user can compare, in [0, 1], for Personalize-shaped requests
(``Request.personalize``), following what Amazon Personalize documents for its own scores.

============================  ==================================================================
answer                        score of item ``i``
============================  ==================================================================
a known user's items          ``exp(s_ui) / sum_j exp(s_uj)`` over **every** item of the
                              catalogue (``s`` = the model score, ``U[u] @ V[j] + b_u + b_j``),
                              before filters and exclusions: Personalize's User-Personalization
                              softmax, so a user's scores over all items sum to 1
a ranking (``inputList``)     the same softmax over the known input items only (they sum to 1);
                              an item the model does not know gets 0 (Personalize: "an item not
                              present in training receives a score of 0")
related items (``itemId``)    ``(1 + cosine) / 2`` of the item embeddings, or the co-occurrence
                              cosine itself (already in [0, 1]); Personalize shows no scores
                              for related items
popularity (``popular``,      the item's share of all training interactions,
``trending``, and the         ``count_i / sum_j count_j`` (sums to 1 over the catalogue, like
fallback for an unknown       the softmax), marked ``basis="popularity"`` (``"reason":
user or item)                 ["Popular item"]`` in JSON)
a fresh ``history``           the softmax over the returned items (not reachable from
                              Personalize's fields)
============================  ==================================================================

Scores keep 6 significant digits. :func:`calibrated` wraps a request type's handler so that its
Personalize-shaped answers get these scores; other answers are left as they are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from mfrec.serve.requests import Recommendation, Request

if TYPE_CHECKING:
    from mfrec.serve.jobs import Handler
    from mfrec.serve.recommender import Recommender

ROWS_PER_CHUNK = 64


def significant(values: np.ndarray, digits: int = 6) -> np.ndarray:
    """``values`` (>= 0) rounded to ``digits`` significant digits."""
    values = np.asarray(values, dtype=np.float64)
    magnitude = np.floor(np.log10(np.where(values > 0, values, 1.0)))
    scale = 10.0 ** (digits - 1 - magnitude)
    return np.round(values * scale) / scale


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max()) if len(scores) else scores
    return shifted / shifted.sum() if len(scores) else shifted


def log_partition(recommender: Recommender, user_idx: np.ndarray) -> np.ndarray:
    """``log sum_j exp(s_uj)`` over all items for each user, shape (n,), in chunks of rows."""
    tensors = recommender.tensors
    engine, out = tensors.by_score, np.empty(len(user_idx))
    for start in range(0, len(user_idx), ROWS_PER_CHUNK):
        rows = tensors.indices(user_idx[start : start + ROWS_PER_CHUNK])
        scores = torch.addmm(engine.bias, tensors.user_embeddings[rows], engine.keys_t)
        scores += tensors.user_biases[rows].unsqueeze(1)
        out[start : start + len(rows)] = torch.logsumexp(scores, 1).double().cpu().numpy()
    return out


def with_probabilities(
    recommender: Recommender, requests: Sequence[Request], answers: list[Recommendation]
) -> list[Recommendation]:
    """``answers`` with [0, 1] scores added to those of Personalize-shaped requests."""
    wanted = [p for p, r in enumerate(requests) if r.personalize and answers[p].error is None]
    if not wanted:
        return answers
    answers = list(answers)
    known_users = []
    for position in wanted:
        request, answer = requests[position], answers[position]
        scores = np.asarray(answer.scores, dtype=np.float64)
        if _is_popularity(recommender, request):
            name = request.type if request.type in ("popular", "trending") else "popular"
            total = recommender.catalog.counts(name).sum()
            known = np.nan_to_num(scores, nan=0.0)
            if request.type == "rank":  # shares among the input items
                total = known.sum()
            probabilities, basis = known / total if total > 0 else known * 0.0, "popularity"
        elif request.type == "user":
            known_users.append(position)
            continue
        elif request.type == "rank":
            probabilities, known = np.zeros(len(scores)), ~np.isnan(scores)
            probabilities[known] = softmax(scores[known])
            basis = "model"
        elif request.type == "similar_items":
            cooccurrence = request.similarity == "cooccurrence"
            probabilities = scores if cooccurrence else (1.0 + scores) / 2.0
            basis = "model"
        else:  # a fresh history
            probabilities, basis = softmax(scores), "model"
        answers[position] = _with(answer, probabilities, basis)
    if known_users:
        user_idx = np.array([recommender.user_index[requests[p].user_id] for p in known_users])
        for position, log_z in zip(known_users, log_partition(recommender, user_idx), strict=True):
            answer = answers[position]
            answers[position] = _with(answer, np.exp(answer.scores - log_z), "model")
    return answers


def _is_popularity(recommender: Recommender, request: Request) -> bool:
    """Whether the answer is a popularity list: asked for, or the fallback for a user or item
    the model does not know."""
    if request.type in ("popular", "trending"):
        return True
    if request.type == "similar_items":
        return request.item_id not in recommender.catalog.index
    if request.type in ("user", "rank"):
        return request.user_id not in recommender.user_index
    return False


def _with(answer: Recommendation, probabilities: np.ndarray, basis: str) -> Recommendation:
    clipped = np.clip(np.nan_to_num(probabilities, nan=0.0), 0.0, 1.0)
    return dataclasses.replace(answer, probabilities=significant(clipped), basis=basis)


def calibrated(handler: type[Handler]) -> type[Handler]:
    """A subclass of a request type's handler whose answers go through
    :func:`with_probabilities`."""

    def __call__(self, requests):
        return with_probabilities(self.rec, requests, handler.__call__(self, requests))

    return type(handler.__name__, (handler,), {"__call__": __call__, "__doc__": handler.__doc__})
