"""A model's arrays as torch tensors on one device, and the computations on whole batches of
users that need them: fold-in of fresh histories and scores of (user, item) pairs.

Built on first use by the :class:`~mfrec.serve.recommender.Recommender`, never before a fork:
on the CPU the tensors share the NumPy arrays' memory (no copy), so gunicorn workers share the
model the master loaded; CUDA is started in each worker.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import mmap
from collections.abc import Sequence

import numpy as np
import torch

from mfrec.serve.scoring import TopK, fold_in, mean_embedding
from mfrec.train.artifact import ModelArtifact

logger = logging.getLogger(__name__)

FOLD_IN_METHODS = ("als", "mean")
FOLD_IN_BATCH = 4096  # history items folded in at once: (4096, dim, dim) outer products


def _tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` as float32 on ``device``; on the CPU it shares the NumPy memory (no copy)."""
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(array).to(device)


def shared_copy(array: np.ndarray) -> np.ndarray:
    """A copy of ``array`` in anonymous memory, advised into transparent huge pages.

    Made in the server's master before the fork, the copy is shared copy-on-write by every
    worker (nothing writes to it), so it costs its size once. Scoring one user reads every item
    vector, and does so faster from this copy than from the memory-mapped file's 4 kB pages:
    2.5 against 4.4 ms for 50,000 x 128 floats with one torch thread (benchmarks/NOTES.md,
    "Session 7"). Where the kernel gives no huge pages it is still a plain anonymous copy.
    """
    memory = mmap.mmap(-1, max(1, array.nbytes), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_HUGEPAGE"):  # Linux; "madvise" or "always" in transparent_hugepage
        with contextlib.suppress(OSError):
            memory.madvise(mmap.MADV_HUGEPAGE)
    copy = np.frombuffer(memory, dtype=array.dtype, count=array.size).reshape(array.shape)
    copy[...] = array
    return copy


class ModelTensors:
    """Embeddings, biases and the two top-k engines on ``device``: :attr:`by_score` (items by
    model score for a user vector) and :attr:`by_cosine` (items by cosine to an item)."""

    def __init__(self, artifact: ModelArtifact, device: torch.device) -> None:
        self.artifact, self.device = artifact, device
        self.user_embeddings = _tensor(artifact.user_embeddings, device)
        self.user_biases = _tensor(artifact.user_biases, device)
        self.item_embeddings = _tensor(artifact.item_embeddings, device)
        self.item_biases = _tensor(artifact.item_biases, device)
        self.by_score = TopK(self.item_embeddings, self.item_biases)
        self.sequence = None
        if artifact.sequence:  # a sequence model encodes fresh histories itself
            # Imported here: the sequence model's module brings the training code (and pandas)
            # into every server's start-up otherwise (tests/serve/test_startup_imports.py).
            from mfrec.serve.sequence import SequenceEncoder

            self.sequence = SequenceEncoder(artifact, device)
        self._by_cosine: TopK | None = None

    # Computed on first use (fresh histories need them), not while a worker boots: a second
    # of a 1M-user model's start-up is spent before its first /ping otherwise.
    @functools.cached_property
    def gram(self) -> torch.Tensor:
        """``V'V`` of the item embeddings, shape (dim, dim): the ALS fold-in's Gram matrix."""
        return self.item_embeddings.T @ self.item_embeddings

    @functools.cached_property
    def gram_scale(self) -> float:
        """The mean eigenvalue of :attr:`gram` (its trace / dim)."""
        return float(torch.trace(self.gram)) / max(1, self.artifact.embedding_dim)

    @functools.cached_property
    def user_norm(self) -> float:
        """Median norm of the trained user vectors (1 without users): the length of a
        ``mean`` fold-in's vector."""
        users = self.user_embeddings.norm(dim=1)
        return float(users.median()) if len(users) else 1.0

    @property
    def by_cosine(self) -> TopK:
        """Top-k by cosine between items; its keys are the unit item vectors (built on the
        first request that needs them)."""
        if self._by_cosine is None:
            norms = self.item_embeddings.norm(dim=1, keepdim=True).clamp_min(1e-12)
            self._by_cosine = TopK(self.item_embeddings / norms)
        return self._by_cosine

    def indices(self, idx: np.ndarray | list[int]) -> torch.Tensor:
        return torch.as_tensor(np.asarray(idx, dtype=np.int64)).to(self.device)

    def fold_in(
        self,
        histories: Sequence[np.ndarray],
        users: torch.Tensor,
        method: str,
        confidence: float,
        regularization: float,
    ) -> torch.Tensor:
        """User vectors for fresh histories (item indices), ``users`` -1 when unknown.

        ``als``: :func:`~mfrec.serve.scoring.fold_in`, a known user's trained vector as prior;
        ``mean``: the mean embedding of the history (and a known user's training items),
        rescaled to the median norm of the trained user vectors. A known user with nothing to
        fold in keeps the trained vector. Histories are solved a few thousand items at a time.
        A sequence model ignores ``method``: it encodes the history (:mod:`mfrec.serve.sequence`).
        """
        if self.sequence is not None:
            return self.sequence.user_vectors(histories, users, self.user_embeddings)
        known = users >= 0
        priors = self.user_embeddings[users.clamp(min=0)] * known.unsqueeze(1)
        if not histories:
            return priors
        # Decided on the fresh items alone: the mean method adds the training items below.
        empty = torch.tensor([len(h) == 0 for h in histories], device=self.device)
        if method == "mean":
            histories = [
                h if u < 0 else np.concatenate([h, self.artifact.seen_items(u)])
                for h, u in zip(histories, users.tolist(), strict=True)
            ]
        vectors, start, total = [], 0, 0
        for end in range(1, len(histories) + 1):
            total += len(histories[end - 1])
            if total < FOLD_IN_BATCH and end < len(histories):
                continue
            batch = histories[start:end]
            if method == "mean":
                vectors.append(mean_embedding(self.item_embeddings, batch, self.user_norm))
            else:
                vectors.append(
                    fold_in(
                        self.item_embeddings,
                        self.gram,
                        batch,
                        priors[start:end],
                        confidence,
                        regularization * self.gram_scale,
                    )
                )
            start, total = end, 0
        return torch.where((empty & known).unsqueeze(1), priors, torch.cat(vectors))

    def pair_scores(self, users: np.ndarray, items: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Model scores of user ``users[r]`` for items ``items[r]`` (empty when the user is -1),
        computed for all pairs at once."""
        lengths = np.array([len(i) if u >= 0 else 0 for u, i in zip(users, items, strict=True)])
        if not lengths.sum():
            return [np.empty(0) for _ in items]
        rows = self.indices(np.repeat(users, lengths))
        cols = self.indices(
            np.concatenate([i for u, i in zip(users, items, strict=True) if u >= 0])
        )
        flat = (
            (self.user_embeddings[rows] * self.item_embeddings[cols]).sum(dim=1)
            + self.item_biases[cols]
            + self.user_biases[rows]
        )
        return np.split(flat.double().cpu().numpy(), np.cumsum(lengths)[:-1])
