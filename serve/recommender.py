"""Recommendations from a trained model artifact, vectorised on a torch device.

A :class:`Recommender` answers :class:`Request` records. Requests of one type are answered
together: the known users of a batch are scored with one matrix product and one top-k per chunk
of rows (a chunk bounds the score matrix to ``_SCORES_PER_CHUNK`` elements), their training
items masked through the artifact's CSR arrays. The HTTP layer (:mod:`mfrec.serve.codecs`) only
turns bytes into requests and recommendations back into bytes.

Torch tensors are built on first use, not in ``__init__``: the server loads the artifact in the
gunicorn master (so workers share its memory copy-on-write) and each worker then picks its device
itself, because CUDA cannot be started before a fork.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mfrec.train.artifact import ModelArtifact, load
from mfrec.train.errors import ConfigError

log = logging.getLogger("mfrec.serve")

UNKNOWN_USER_CHOICES = ("popular", "error")
SCORE_DECIMALS = 6  # scores are rounded to 6 decimals: float32 carries about 7 digits
_SCORES_PER_CHUNK = 1 << 25  # 128 MiB of float32 scores per chunk of users


@dataclass(frozen=True)
class Request:
    """One record of a request body, already type-checked.

    ``type`` says what is asked: ``"user"`` (the items a known user should see next) or
    ``"popular"`` (the most popular items, no user). :meth:`from_fields` infers it from the fields
    present, so new request types (similar items, ranking, fold-in) add a field and a handler.
    ``None`` means "the deployment's default" for ``top_n`` and ``exclude_seen``.
    """

    type: str = "user"
    user_id: str | None = None
    top_n: int | None = None
    exclude_seen: bool | None = None

    @classmethod
    def from_fields(cls, type: str | None = None, **fields) -> Request:  # noqa: A002
        """A request whose type is ``type`` or, when absent, inferred from the fields given."""
        if type is None:
            type = "user" if fields.get("user_id") is not None else "popular"  # noqa: A001
        return cls(type=type, **fields)


@dataclass(frozen=True)
class Recommendation:
    """The answer to one request: item ids best first, their scores, and a note or an error.

    Unpacks like implicit's ``(ids, scores)``: ``item_ids, scores = recommendation``.

    Attributes
    ----------
    item_ids : ndarray of str objects, shape (n,)
    scores : ndarray of float64, shape (n,)
        Model scores (``U[u] @ V[i] + user_bias[u] + item_bias[i]``) rounded to
        ``SCORE_DECIMALS``; for a popularity list, the items' training interaction counts.
    note : str or None
        Set when the answer is not the model's ranking (e.g. the popularity fallback).
    error : str or None
        Set when the request could not be answered; ``item_ids`` is then empty.
    """

    item_ids: np.ndarray
    scores: np.ndarray
    note: str | None = None
    error: str | None = None

    def __iter__(self):
        return iter((self.item_ids, self.scores))

    @classmethod
    def failed(cls, error: str) -> Recommendation:
        return cls(np.empty(0, dtype=object), np.empty(0), error=error)


def resolve_device(spec: str | torch.device) -> torch.device:
    """``"auto"`` → CUDA when it starts, else the CPU (with a log line saying why)."""
    if str(spec) not in ("auto", "cpu") and not str(spec).startswith("cuda"):
        raise ConfigError(f"device {str(spec)!r} is not known; use auto, cpu, cuda or cuda:N")
    if str(spec) == "cpu" or (str(spec) == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    try:
        device = torch.device("cuda" if str(spec) == "auto" else spec)
        torch.zeros(1, device=device)
    except (RuntimeError, AssertionError) as exc:  # AssertionError: a CPU-only torch build
        log.warning("CUDA failed to start for device=%s (%s); serving on the CPU", spec, exc)
        return torch.device("cpu")
    return device


def _tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` as float32 on ``device``; on the CPU it shares the NumPy memory (no copy)."""
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(array).to(device)


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
        A user absent from training gets the popularity list (as Amazon Personalize does) or an
        error answer.
    default_top_n, max_top_n : int
        ``top_n`` of a request that gives none, and the largest one accepted.
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
    ) -> None:
        if unknown_user not in UNKNOWN_USER_CHOICES:
            raise ConfigError(f"unknown_user={unknown_user!r}; use one of {UNKNOWN_USER_CHOICES}")
        if not 1 <= default_top_n <= max_top_n:
            raise ConfigError(
                f"default_top_n={default_top_n} must be between 1 and max_top_n={max_top_n}"
            )
        self.artifact = artifact
        self.device_spec = device
        self.exclude_seen = exclude_seen
        self.unknown_user = unknown_user
        self.default_top_n = default_top_n
        self.max_top_n = max_top_n
        self.user_index = {user_id: idx for idx, user_id in enumerate(artifact.user_ids.tolist())}
        self.item_index = {item_id: idx for idx, item_id in enumerate(artifact.item_ids.tolist())}
        self.item_ids = np.array(artifact.item_ids.tolist(), dtype=object)
        popularity = np.asarray(artifact.item_popularity, dtype=np.float64)
        self.popular_idx = np.argsort(-popularity, kind="stable")
        self.popular_scores = np.round(popularity[self.popular_idx], SCORE_DECIMALS)
        self._handlers = {"user": self._answer_users, "popular": self._answer_popular}
        self._tensors: dict[str, torch.Tensor] | None = None
        self._scratch: torch.Tensor | None = None
        self._scratch_lock = threading.Lock()
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
        log.info("model on %s: %d users x %d items", self.device, self.num_users, self.num_items)

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
            [Request("user", u, n, exclude_seen) for u, n in zip(user_ids, top_ns, strict=True)]
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
                answers = [Recommendation.failed(self._unknown_type(request_type))] * len(where)
            else:
                answers = handler([requests[p] for p in where])
            for position, answer in zip(where, answers, strict=True):
                results[position] = answer
        return results  # type: ignore[return-value]

    def _unknown_type(self, request_type: str) -> str:
        return f"request type {request_type!r} is not known; use one of {list(self._handlers)}"

    def _top_n(self, request: Request) -> int | str:
        """The request's ``top_n``, or an error message."""
        top_n = self.default_top_n if request.top_n is None else request.top_n
        if not 1 <= top_n <= self.max_top_n:
            return f"top_n={top_n} is out of range; use 1 to {self.max_top_n}"
        return top_n

    def _answer_popular(self, requests: Sequence[Request]) -> list[Recommendation]:
        return [self._popular(request, note=None) for request in requests]

    def _popular(self, request: Request, note: str | None) -> Recommendation:
        top_n = self._top_n(request)
        if isinstance(top_n, str):
            return Recommendation.failed(top_n)
        best = self.popular_idx[:top_n]
        return Recommendation(self.item_ids[best], self.popular_scores[:top_n], note=note)

    def _answer_users(self, requests: Sequence[Request]) -> list[Recommendation]:
        results: list[Recommendation | None] = [None] * len(requests)
        rows, user_idx, top_ns, exclude = [], [], [], []
        for row, request in enumerate(requests):
            top_n = self._top_n(request)
            idx = self.user_index.get(request.user_id)
            if isinstance(top_n, str):
                results[row] = Recommendation.failed(top_n)
            elif idx is None:
                results[row] = self._unknown(request)
            else:
                rows.append(row)
                user_idx.append(idx)
                top_ns.append(top_n)
                seen = self.exclude_seen if request.exclude_seen is None else request.exclude_seen
                exclude.append(seen)
        if rows:
            items, scores = self.top_items(np.array(user_idx), max(top_ns), np.array(exclude))
            for row, top_n, item_row, score_row in zip(rows, top_ns, items, scores, strict=True):
                keep = min(top_n, int(np.isfinite(score_row).sum()))
                results[row] = Recommendation(self.item_ids[item_row[:keep]], score_row[:keep])
        return results  # type: ignore[return-value]

    def _unknown(self, request: Request) -> Recommendation:
        if self.unknown_user == "error":
            return Recommendation.failed(f"user {request.user_id!r} is not in the model")
        return self._popular(request, note="unknown user: most popular items")

    def top_items(
        self, user_idx: np.ndarray, k: int, exclude_seen: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best items of each user, chunk by chunk.

        Parameters
        ----------
        user_idx : ndarray of int, shape (n,)
        k : int
        exclude_seen : ndarray of bool, shape (n,)
            Rows whose training items are masked.

        Returns
        -------
        item_idx : ndarray of int64, shape (n, min(k, num_items))
        scores : ndarray of float64, shape (n, min(k, num_items))
            Rounded to ``SCORE_DECIMALS``; ``-inf`` where fewer than k items were left.
        """
        self._ensure_tensors()
        k = min(k, self.num_items)
        chunk = max(1, _SCORES_PER_CHUNK // max(1, self.num_items))
        item_idx = np.empty((len(user_idx), k), dtype=np.int64)
        scores = np.empty((len(user_idx), k), dtype=np.float64)
        for start in range(0, len(user_idx), chunk):
            rows = slice(start, start + chunk)
            item_idx[rows], scores[rows] = self._top_chunk(user_idx[rows], k, exclude_seen[rows])
        return item_idx, np.round(scores, SCORE_DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0

    def _top_chunk(self, user_idx: np.ndarray, k: int, exclude_seen: np.ndarray):
        t = self._tensors
        users = torch.from_numpy(user_idx).to(self.device)
        big = len(user_idx) * self.num_items > _SCORES_PER_CHUNK // 8
        # Big score matrices go into one buffer per process: allocating 100+ MB per chunk costs
        # more in page faults than the product itself. Small (real-time) requests do not wait.
        with self._scratch_lock if big else contextlib.nullcontext():
            out = self._scratch_buffer(len(user_idx)) if big else None
            matrix = torch.addmm(
                t["item_biases"], t["user_embeddings"][users], t["item_t"], out=out
            )
            rows, cols = self._seen_pairs(user_idx, exclude_seen)
            if len(rows):
                matrix[rows.to(self.device), cols.to(self.device)] = -torch.inf
            values, winners = torch.topk(matrix, k, dim=1)
        # The user bias shifts a whole row: it does not change the ranking, so it is added to
        # the k winners only.
        values += t["user_biases"][users].unsqueeze(1)
        return winners.cpu().numpy(), values.cpu().numpy()

    def _scratch_buffer(self, num_rows: int) -> torch.Tensor:
        rows = max(1, _SCORES_PER_CHUNK // max(1, self.num_items))
        if self._scratch is None:
            self._scratch = torch.empty((rows, self.num_items), device=self.device)
        return self._scratch[:num_rows]

    def _seen_pairs(self, user_idx: np.ndarray, exclude_seen: np.ndarray):
        """(row, item) tensors of the training items of the rows with ``exclude_seen``."""
        rows_masked = np.flatnonzero(exclude_seen)
        users = user_idx[rows_masked]
        indptr = self.artifact.seen_indptr
        starts, counts = indptr[users], indptr[users + 1] - indptr[users]
        rows = np.repeat(rows_masked, counts)
        offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        cols = self.artifact.seen_indices[np.repeat(starts, counts) + offsets]
        return torch.from_numpy(rows), torch.from_numpy(np.asarray(cols, dtype=np.int64))

    def _ensure_tensors(self) -> dict[str, torch.Tensor]:
        if self._tensors is None:
            self.device = resolve_device(self.device_spec)
            a = self.artifact
            self._tensors = {
                "user_embeddings": _tensor(a.user_embeddings, self.device),
                "item_t": _tensor(a.item_embeddings, self.device).T,
                "user_biases": _tensor(a.user_biases, self.device),
                "item_biases": _tensor(a.item_biases, self.device),
            }
        return self._tensors
