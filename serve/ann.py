"""Approximate top-k by model score for large catalogues (issue 15, item 6).

Above ``MFREC_ANN_MIN_ITEMS`` items (default 1,000,000), and when the optional extra is
installed (``pip install 'mfrec[ann]'``: faiss-cpu), ``user`` and ``history`` requests search a
faiss IVF-Flat inner-product index instead of scoring every item. The item bias is folded into
the inner product (item ``[v, b]`` against query ``[u, 1]``), so the index ranks by the model's
own score. Filters and exclusions stay exact: the index only proposes candidates,
over-fetched, which are then masked and re-scored exactly as :class:`~mfrec.serve.scoring.TopK`
would; a row left with fewer than ``k`` valid candidates is searched exactly instead. A search
of ``EXACT_FROM_ROWS`` rows or more (a micro-batch of several requests, a batch transform body)
is exact too: there one matrix product beats scanning the index row by row.

The index is built when a worker first needs the model's tensors (its warm-up), from the
embeddings already loaded: nothing is stored in the artifact (no pickle, no second format to
version), at the cost of the build time each worker spends before it answers (docs/serving.md,
"Large catalogues").

=========================  ===========  ==============================================
variable                   default      meaning
=========================  ===========  ==============================================
``MFREC_ANN``              ``auto``     ``off``: always exact; ``auto``: the index from
                                        ``MFREC_ANN_MIN_ITEMS`` items up when the extra
                                        is installed; ``on``: the index whatever the size
                                        (an error at start-up without the extra)
``MFREC_ANN_MIN_ITEMS``    1,000,000    catalogue size from which ``auto`` uses the index
=========================  ===========  ==============================================
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from mfrec.serve.scoring import Masks, TopK
from mfrec.train.errors import ConfigError
from mfrec.train.ranking import top_k

logger = logging.getLogger(__name__)

ANN_MODES = ("off", "auto", "on")
MIN_ITEMS = 1_000_000
#: Candidates fetched per wanted item (plus the row's banned items, see :meth:`search`).
FETCH_FACTOR = 4
#: Fewest candidates fetched per row, and the most the banned items may add.
MIN_FETCH, MAX_FETCH = 100, 4096
#: Share of the inverted lists probed per query, and the fewest probed (all of them when there
#: are fewer): recall@25 >= 0.95 on structureless embeddings (benchmarks/NOTES.md).
PROBED_SHARE, MIN_PROBED = 1 / 8, 64
#: Searches of this many query rows or more are exact: one matrix product reads the item vectors
#: once for all rows, while IVF scans its lists per row (1M items: a lone query 365 ms exact
#: against 61 ms, but 39 ms per query exact in a batch of 200 against 68; benchmarks/NOTES.md).
EXACT_FROM_ROWS = 6
#: Candidate vectors gathered for exact re-scoring at once (64 MiB of float32 at most).
GATHERED_PER_CHUNK = 1 << 24
INSTALL = "pip install 'mfrec[ann]'"


@dataclass(frozen=True)
class AnnSettings:
    """When to search an approximate index (see the module docstring)."""

    mode: str = "auto"
    min_items: int = MIN_ITEMS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AnnSettings:
        env = os.environ if environ is None else environ
        mode = env.get("MFREC_ANN", "").strip().lower() or "auto"
        if mode not in ANN_MODES:
            raise ConfigError(f"MFREC_ANN={mode!r}; use one of {', '.join(ANN_MODES)}")
        text = env.get("MFREC_ANN_MIN_ITEMS", "").strip() or str(MIN_ITEMS)
        if not text.isdigit() or int(text) < 1:
            raise ConfigError(f"MFREC_ANN_MIN_ITEMS={text!r} must be a positive integer")
        if mode == "on" and not installed():
            raise ConfigError(f"MFREC_ANN=on needs faiss-cpu: {INSTALL}, or set MFREC_ANN=auto")
        return cls(mode, int(text))

    def wanted(self, num_items: int) -> bool:
        """Whether a catalogue of ``num_items`` is searched approximately (logs why not)."""
        if self.mode == "on" or (self.mode == "auto" and num_items >= self.min_items):
            if installed():
                return True
            logger.warning(
                "exact search for %d items: faiss-cpu is not installed (%s)", num_items, INSTALL
            )
        elif self.mode == "auto":
            logger.info(
                "exact search: %d items is under MFREC_ANN_MIN_ITEMS=%d", num_items, self.min_items
            )
        return False


def installed() -> bool:
    """Whether the optional extra (faiss-cpu) can be imported."""
    return importlib.util.find_spec("faiss") is not None


class ApproximateTopK:
    """:class:`TopK`'s :meth:`search` through a faiss IVF-Flat inner-product index.

    Parameters
    ----------
    exact : TopK
        The exact engine: its keys and biases re-score the candidates; it answers the rows the
        candidates cannot.
    index : faiss.IndexIVFFlat
        Over ``[keys, bias]``, shape (num_items, dim + 1).
    """

    def __init__(self, exact: TopK, index) -> None:
        self.exact, self.index = exact, index
        self.keys, self.num_items = exact.keys, exact.num_items
        self.exact_from_rows = EXACT_FROM_ROWS
        self.exact_rows = 0  # rows answered by the exact engine, for tests and logs

    @classmethod
    def build(cls, exact: TopK, nlist: int | None = None, nprobe: int | None = None):
        """Train and fill the index: ``nlist`` k-means lists (default ``4 sqrt(num_items)``, at
        most one per 64 items) trained on at most 64 vectors per list; ``nprobe`` of them
        searched per query (default ``PROBED_SHARE`` of them, at least ``MIN_PROBED``: a
        catalogue of a few thousand items is searched whole)."""
        import faiss

        started = time.perf_counter()
        faiss.omp_set_num_threads(torch.get_num_threads())  # the worker's share of the CPUs
        vectors = torch.cat([exact.keys, exact.bias[:, None]], 1).float().cpu().numpy()
        vectors = np.ascontiguousarray(vectors)
        nlist = nlist or max(1, min(int(4 * np.sqrt(len(vectors))), len(vectors) // 64))
        index = faiss.IndexIVFFlat(
            faiss.IndexFlatIP(vectors.shape[1]), vectors.shape[1], nlist, faiss.METRIC_INNER_PRODUCT
        )
        sample = np.random.default_rng(0).permutation(len(vectors))[: 64 * nlist]
        index.train(vectors[np.sort(sample)])
        index.add(vectors)
        index.nprobe = min(nprobe or max(MIN_PROBED, int(np.ceil(nlist * PROBED_SHARE))), nlist)
        logger.info(
            "approximate search: IVF index of %d items, %d lists, nprobe %d, built in %.1f s",
            len(vectors),
            nlist,
            index.nprobe,
            time.perf_counter() - started,
        )
        return cls(exact, index)

    def search(
        self, queries: torch.Tensor, k: int, masks: Masks, offsets: torch.Tensor | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`TopK.search`: item indices (n, k) and scores (n, k), ``-inf`` where masked;
        in chunks of rows whose candidates' vectors fit ``GATHERED_PER_CHUNK``. A search of
        ``exact_from_rows`` rows or more (a batch) is exact.

        Each row fetches ``max(MIN_FETCH, FETCH_FACTOR k)`` candidates plus the most items any
        row bans (at most ``MAX_FETCH`` more), sorted by item index so that ties rank the lower
        index first, as exact search does. Rows with fewer than ``k`` valid candidates after
        the masks are searched exactly.
        """
        if len(queries) >= self.exact_from_rows:
            self.exact_rows += len(queries)
            return self.exact.search(queries, k, masks, offsets)
        k = min(k, self.num_items)
        item_idx = np.empty((len(queries), k), dtype=np.int64)
        scores = np.empty((len(queries), k), dtype=np.float64)
        banned = np.bincount(masks.rows).max(initial=0) if len(masks.rows) else 0
        fetch = max(MIN_FETCH, FETCH_FACTOR * k) + min(int(banned), MAX_FETCH)
        fetch = min(self.num_items, fetch)
        rows = max(1, GATHERED_PER_CHUNK // (fetch * self.keys.shape[1]))
        for start in range(0, len(queries), rows):
            stop = min(start + rows, len(queries))
            item_idx[start:stop], scores[start:stop] = self._search(
                queries[start:stop], k, fetch, masks.chunk(start, stop)
            )
        if offsets is not None:
            scores += offsets.double().cpu().numpy()[:, None]
        return item_idx, scores

    def _search(self, queries: torch.Tensor, k: int, fetch: int, masks: Masks):
        n, device = len(queries), queries.device
        ones = torch.ones(n, 1, device=device, dtype=queries.dtype)
        flat = np.ascontiguousarray(torch.cat([queries, ones], 1).float().cpu().numpy())
        candidates = self.index.search(flat, fetch)[1]  # -1 pads a short list
        candidates = np.sort(np.where(candidates < 0, self.num_items, candidates), axis=1)
        valid = (candidates < self.num_items) & ~_banned(candidates, masks, self.num_items)
        for row, allowed in masks.allowed.items():
            valid[row] &= np.isin(candidates[row], allowed)
        idx = torch.from_numpy(np.minimum(candidates, self.num_items - 1)).to(device)
        scores = torch.bmm(self.keys[idx], queries.unsqueeze(2)).squeeze(2) + self.exact.bias[idx]
        scores[~torch.from_numpy(valid).to(device)] = -torch.inf
        values, position = top_k(scores, k)
        item_idx, found = idx.gather(1, position).cpu().numpy(), values.double().cpu().numpy()
        short = np.flatnonzero(~np.isfinite(found[:, -1])) if k else np.empty(0, np.int64)
        if len(short):  # too few valid candidates: these rows exactly
            self.exact_rows += len(short)
            item_idx[short], found[short] = self.exact.search(
                queries[torch.from_numpy(short).to(device)], k, _rows(masks, short)
            )
        return item_idx, found


def _banned(candidates: np.ndarray, masks: Masks, num_items: int) -> np.ndarray:
    """Whether each (row, candidate) is a banned pair of ``masks``; shape of ``candidates``."""
    if not len(masks.rows):
        return np.zeros(candidates.shape, dtype=bool)
    width = num_items + 1
    pairs = np.arange(len(candidates))[:, None] * width + candidates
    return np.isin(pairs, masks.rows * width + masks.items)


def _rows(masks: Masks, rows: np.ndarray) -> Masks:
    """The masks of ``rows`` (ascending), renumbered from 0 in that order."""
    renumber = np.full(int(rows.max()) + 1, -1)
    renumber[rows] = np.arange(len(rows))
    keep = masks.rows <= rows.max()
    keep[keep] = renumber[masks.rows[keep]] >= 0
    allowed = {int(renumber[r]): a for r, a in masks.allowed.items() if r in set(rows.tolist())}
    return Masks(renumber[masks.rows[keep]], masks.items[keep], allowed)
