"""Ranking metrics with Amazon Personalize's definitions, in one batched pass over the users.

Definitions (``../shared/BENCHMARKS.md``, protocol Q, step 5), for each evaluated user:

- Ranking: all items are scored; with ``exclude_seen`` the user's training items get -inf and
  are never recommended. Items are ordered by descending score, **ties broken by the lower
  item index first** (:func:`mfrec.train.ranking.top_k`, which serving uses too), and the
  first ``k`` (25) form the user's list. Items scored -inf (when fewer than ``k`` remain) are
  not part of the list.
- Relevant items: the user's distinct test items, less (with ``exclude_seen``) those among
  their training items, which cannot be recommended. Users with no relevant item are not
  evaluated; every metric is the mean over evaluated users.
- ``precision@K`` = hits in the top K / K (K = 5, 10, 25), also when fewer items are relevant.
- ``recall@10`` = hits in the top 10 / min(10, number of relevant items).
- ``mrr@25`` = 1 / (1-based position of the first hit in the top 25); 0 without a hit.
- ``ndcg@K`` = DCG / ideal DCG with gain ``1 / log2(1 + position)`` per hit (positions from 1),
  the ideal being min(K, number of relevant items) hits at the top (K = 5, 10, 25).
- ``coverage`` = share of the catalogue (``num_items``) that appears in at least one
  evaluated user's top-``k`` list.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import numpy as np
import torch

from mfrec.train.interactions import Interactions
from mfrec.train.metric_lines import CUTOFFS
from mfrec.train.progress import ProgressBar
from mfrec.train.ranking import csr_rows, top_k

# Score bytes per (user, item) of a chunk: the scores, their masked copy, the relevance mask
# and top-k's work space.
BYTES_PER_SCORE = 16
# The CPU's budget for one chunk of scores (1 << 24 scores, as before), and the share of a
# GPU's free memory a chunk may take.
CPU_CHUNK_BYTES = 256 * 2**20
GPU_FREE_SHARE = 0.5
# Device-side CSR arrays of the Interactions evaluated, kept while the object lives: validation
# after every epoch evaluates the same FIT and VALID objects and need not rebuild them.
_CSR_CACHE: dict[tuple[int, str], tuple[weakref.ref, torch.Tensor, torch.Tensor]] = {}


def _csr(data: Interactions, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``data``'s CSR (indptr, indices) on ``device``, built once per object and device."""
    key = (id(data), str(torch.device(device)))
    found = _CSR_CACHE.get(key)
    if found is not None and found[0]() is data:
        return found[1], found[2]
    indptr, indices = data.to_csr()
    indptr, indices = (
        torch.as_tensor(indptr, device=device),
        torch.as_tensor(indices, device=device),
    )
    _CSR_CACHE[key] = (weakref.ref(data), indptr, indices)
    weakref.finalize(data, _CSR_CACHE.pop, key, None)
    return indptr, indices


def chunk_elements_for(device: str | torch.device) -> int:
    """Scores per chunk: :data:`GPU_FREE_SHARE` of the GPU's free memory, or
    :data:`CPU_CHUNK_BYTES` on the CPU, over :data:`BYTES_PER_SCORE`."""
    device = torch.device(device)
    budget = CPU_CHUNK_BYTES
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        budget = int(free * GPU_FREE_SHARE)
    return max(1 << 16, budget // BYTES_PER_SCORE)


@torch.no_grad()
def evaluate(
    scorer,
    train: Interactions,
    test: Interactions,
    k: int = 25,
    exclude_seen: bool = True,
    device: str | torch.device | None = None,
    chunk_elements: int | None = None,
    progress: str | None = None,
) -> dict[str, float]:
    """Personalize-style ranking metrics of ``scorer`` on ``test`` (see the module docstring).

    Parameters
    ----------
    scorer : MatrixFactorization or callable
        A model with ``score_users``, or a function ``user_idx (B,) -> scores (B, num_items)``.
    train, test : Interactions
        In the same index spaces; ``train`` gives the items excluded from ranking.
    k : int
        Length of each user's list (metrics at cutoffs above ``k`` are omitted).
    device : torch.device, optional
        Where scoring runs; defaults to the model's device, else the CPU.
    chunk_elements : int, optional
        Users are scored in chunks of about this many (user, item) scores; by default sized
        from the GPU's free memory, or a fixed budget on the CPU (:func:`chunk_elements_for`).
    progress : str, optional
        Show a progress bar over the users with this description (on a terminal only).

    Returns
    -------
    dict
        ``precision@5``, ``precision@10``, ``precision@25``, ``recall@10``, ``mrr@25``,
        ``ndcg@5``, ``ndcg@10``, ``ndcg@25``, ``coverage`` (floats) and ``num_users`` (users
        evaluated). All metrics are 0.0 when no user can be evaluated.
    """
    score_fn: Callable = getattr(scorer, "score_users", scorer)
    if device is None:  # the model's, else the CPU
        params = list(scorer.parameters()) if hasattr(scorer, "parameters") else []
        device = params[0].device if params else torch.device("cpu")
    num_items = train.num_items
    test_ptr, test_idx = _csr(test, device)
    seen_ptr, seen_idx = _csr(train, device)
    users = torch.nonzero(test_ptr[1:] > test_ptr[:-1]).squeeze(1)
    cutoffs = {name: [c for c in ks if c <= k] for name, ks in CUTOFFS.items()}
    discounts = 1.0 / torch.log2(torch.arange(2, k + 2, device=device, dtype=torch.float64))
    sums = {f"{name}@{c}": 0.0 for name, cs in cutoffs.items() for c in cs}
    sums = {name: torch.zeros((), dtype=torch.float64, device=device) for name in sums}
    covered = torch.zeros(num_items, dtype=torch.int64, device=device)
    evaluated = torch.zeros((), dtype=torch.int64, device=device)
    chunk_elements = chunk_elements or chunk_elements_for(device)
    chunk = max(1, chunk_elements // max(1, num_items))
    bar = ProgressBar(len(users), progress, unit="user") if progress else None
    for start in range(0, len(users), chunk):
        rows = users[start : start + chunk]
        if bar is not None:
            bar.update(len(rows))
        scores = score_fn(rows).to(device=device, dtype=torch.float32).clone()
        relevant = torch.zeros(scores.shape, dtype=torch.bool, device=device)
        tested = csr_rows(test_ptr, test_idx, rows)  # distinct items: the CSR is deduplicated
        relevant[tested] = True
        if exclude_seen:
            seen = csr_rows(seen_ptr, seen_idx, rows)
            scores[seen] = float("-inf")
            relevant[seen] = False
        values, index = top_k(scores, k)
        listed = values > float("-inf")
        hits = relevant.gather(1, index) & listed
        # Counted over the test pairs, not the whole (B, num_items) mask: a quarter of a probe's
        # scoring time on a 10,000-item catalogue went to that row sum.
        num_relevant = torch.zeros(len(rows), dtype=torch.int64, device=device)
        num_relevant.index_add_(0, tested[0], relevant[tested].long())
        keep = num_relevant > 0
        hits, num_relevant = hits[keep].double(), num_relevant[keep]
        # Counts rather than a boolean index: no data-dependent shape, no wait for the device.
        covered.index_add_(0, index.reshape(-1), (listed & keep[:, None]).reshape(-1).long())
        evaluated += keep.sum()
        _add_hits(sums, hits, num_relevant, cutoffs, discounts)
    if bar is not None:
        bar.close()
    count = int(evaluated)
    result = {name: (float(total) / count if count else 0.0) for name, total in sums.items()}
    result["coverage"] = float((covered > 0).sum()) / num_items if count else 0.0
    result["num_users"] = count
    return result


def _add_hits(
    sums: dict[str, torch.Tensor],
    hits: torch.Tensor,
    num_relevant: torch.Tensor,
    cutoffs: dict[str, list[int]],
    discounts: torch.Tensor,
) -> None:
    """Add a chunk of users to the metric sums (definitions in the module docstring).

    ``hits`` (B, k) float64 marks the relevant items of each user's list, ``num_relevant``
    (B,) counts each user's relevant items (at least 1), ``discounts`` (k,) is
    ``1 / log2(1 + position)``.
    """
    ideal = torch.cumsum(discounts, 0)
    for c in cutoffs["precision"]:
        sums[f"precision@{c}"] += hits[:, :c].sum() / c
    for c in cutoffs["recall"]:
        sums[f"recall@{c}"] += (hits[:, :c].sum(1) / num_relevant.clamp(max=c)).sum()
    for c in cutoffs["mrr"]:
        first = hits[:, :c].argmax(dim=1)
        reciprocal = 1.0 / (first + 1).double()
        sums[f"mrr@{c}"] += (reciprocal * (hits[:, :c].sum(1) > 0)).sum()
    for c in cutoffs["ndcg"]:
        dcg = (hits[:, :c] * discounts[: hits[:, :c].shape[1]]).sum(1)
        sums[f"ndcg@{c}"] += (dcg / ideal[num_relevant.clamp(max=c) - 1]).sum()


def popularity_scores(train: Interactions) -> np.ndarray:
    """The popularity baseline's item scores: training interactions per item, (num_items,)."""
    return train.item_counts().astype(np.float32)


def popularity_scorer(train: Interactions, device: str | torch.device = "cpu") -> Callable:
    """A ``score_users`` function that gives every user the training counts of the items."""
    counts = torch.as_tensor(popularity_scores(train), device=device)
    return lambda user_idx: counts.expand(len(user_idx), -1)


def evaluate_popularity(train: Interactions, test: Interactions, k: int = 25, device="cpu"):
    """:func:`evaluate` for the popularity baseline (same definitions, same exclusions)."""
    return evaluate(popularity_scorer(train, device), train, test, k=k, device=device)
