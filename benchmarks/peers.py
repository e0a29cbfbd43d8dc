"""The peers mfrec is measured against: popularity, EASE and implicit's ALS.

Every peer is fitted on :class:`~mfrec.train.interactions.Interactions` and returned as the
factors of a dot-product scorer (``score[u, i] = user_factors[u] @ item_factors[i] +
item_bias[i]``) whose ``score_users`` is what ``mfrec.train.metrics.evaluate`` calls: every
system is ranked and scored by the same code.

Each tunable peer has a grid of hyperparameters; :func:`grid` takes the first ``budget`` entries,
ordered so that a small budget still spans the useful range (the same budget mfrec gets).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mfrec.train.interactions import Interactions

PEERS = ("popularity", "ease", "als")

# Ordered so that a prefix of any length covers the range coarsely first.
GRIDS: dict[str, list[dict]] = {
    "popularity": [{}],
    "ease": [{"l2": v} for v in (100.0, 500.0, 25.0, 250.0, 50.0, 1000.0, 10.0, 2000.0)]
    + [{"l2": v} for v in (150.0, 350.0, 700.0, 5.0)],
    "als": [
        {"factors": f, "regularization": r, "alpha": a, "iterations": 30}
        for f, r, a in (
            (32, 0.1, 1.0),
            (64, 1.0, 1.0),
            (128, 10.0, 1.0),
            (64, 0.1, 5.0),
            (32, 1.0, 5.0),
            (128, 1.0, 5.0),
            (64, 10.0, 10.0),
            (32, 0.01, 1.0),
            (128, 0.1, 1.0),
            (64, 1.0, 20.0),
            (256, 10.0, 5.0),
            (16, 0.1, 1.0),
        )
    ],
}


@dataclass
class FittedPeer:
    """A peer as a dot-product scorer.

    Attributes
    ----------
    user_factors : ndarray of float32, shape (num_users, d)
    item_factors : ndarray of float32, shape (num_items, d)
    item_bias : ndarray of float32, shape (num_items,)
    """

    name: str
    params: dict
    user_factors: np.ndarray
    item_factors: np.ndarray
    item_bias: np.ndarray
    fit_seconds: float = 0.0
    history: list[dict] = field(default_factory=list)

    def score_users(self, user_idx):
        """Scores of users ``user_idx`` (LongTensor (B,)) for every item, Tensor (B, num_items).

        The signature :func:`mfrec.train.metrics.evaluate` expects of a scorer.
        """
        return factor_scores(self.user_factors, self.item_factors, self.item_bias, user_idx)


def factor_scores(user_factors, item_factors, item_bias, user_idx):
    """``user_factors[u] @ item_factors.T + item_bias`` for the users ``user_idx``, as a Tensor."""
    import torch

    rows = user_idx.cpu().numpy()
    scores = user_factors[rows] @ item_factors.T + item_bias
    return torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32))


def grid(name: str, budget: int) -> list[dict]:
    """The first ``budget`` configurations of peer ``name`` (popularity has exactly one)."""
    if name not in GRIDS:
        raise ValueError(f"unknown peer {name!r}; choose from {', '.join(PEERS)}")
    if budget < 1:
        raise ValueError(f"budget must be at least 1, got {budget}")
    return GRIDS[name][:budget]


def user_item_matrix(train: Interactions, binary: bool = True):
    """Training interactions as a SciPy CSR matrix, shape (num_users, num_items), float32.

    Repeated (user, item) pairs are summed, or set to 1 when ``binary``.
    """
    import scipy.sparse as sp

    values = np.ones(len(train), dtype=np.float32)
    matrix = sp.csr_matrix(
        (values, (train.user_idx, train.item_idx)), shape=(train.num_users, train.num_items)
    )
    matrix.sum_duplicates()
    if binary:
        matrix.data[:] = 1.0
    return matrix


def popularity(train: Interactions) -> FittedPeer:
    """Every user gets the items with the most TRAIN interactions."""
    started = time.perf_counter()
    counts = train.item_counts().astype(np.float32)
    return FittedPeer(
        name="popularity",
        params={},
        user_factors=np.zeros((train.num_users, 0), dtype=np.float32),
        item_factors=np.zeros((train.num_items, 0), dtype=np.float32),
        item_bias=counts,
        fit_seconds=time.perf_counter() - started,
    )


def ease_weights(matrix: np.ndarray, l2: float) -> np.ndarray:
    """EASE's closed form (Steck, "Embarrassingly Shallow Autoencoders", WWW 2019).

    ``B = argmin ||X - XB||² + l2 ||B||²`` subject to ``diag(B) = 0``, solved as
    ``P = (XᵀX + l2 I)⁻¹``, ``B = -P / diag(P)`` (column-wise), ``diag(B) = 0``.

    Parameters
    ----------
    matrix : ndarray or sparse matrix, shape (num_users, num_items)
        Binary user × item matrix X.
    l2 : float
        L2 penalty λ.

    Returns
    -------
    ndarray of float64, shape (num_items, num_items)
        Item-item weights B; scores are ``X @ B``.
    """
    gram = matrix.T @ matrix
    gram = np.asarray(gram.toarray() if hasattr(gram, "toarray") else gram, dtype=np.float64)
    gram[np.diag_indices_from(gram)] += l2
    precision = np.linalg.inv(gram)
    weights = precision / -np.diag(precision)
    weights[np.diag_indices_from(weights)] = 0.0
    return weights


def ease(train: Interactions, l2: float = 100.0) -> FittedPeer:
    """EASE as factors: ``user_factors = X`` (num_users × num_items), ``item_factors = Bᵀ``.

    Needs ``num_items²`` doubles of memory; the benchmarks skip it above ``MAX_EASE_ITEMS``.
    """
    started = time.perf_counter()
    matrix = user_item_matrix(train, binary=True)
    weights = ease_weights(matrix, l2)
    return FittedPeer(
        name="ease",
        params={"l2": l2},
        user_factors=matrix.toarray().astype(np.float32),
        item_factors=np.ascontiguousarray(weights.T, dtype=np.float32),
        item_bias=np.zeros(train.num_items, dtype=np.float32),
        fit_seconds=time.perf_counter() - started,
    )


MAX_EASE_ITEMS = 20_000


def als(
    train: Interactions,
    factors: int = 32,
    regularization: float = 0.1,
    alpha: float = 1.0,
    iterations: int = 15,
    random_state: int = 0,
    num_threads: int = 0,
    on_iteration: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
) -> FittedPeer:
    """implicit's ALS (Hu, Koren & Volinsky 2008) on the user × item count matrix.

    implicit ≥ 0.5 takes the user × item matrix (earlier versions took item × user); confidence
    is ``1 + alpha * count`` for observed pairs. ``on_iteration(iteration, user_factors,
    item_factors)`` is called after each sweep (the speed benchmark scores VALID there); the
    time it takes is excluded from ``fit_seconds`` and each ``history`` entry's ``seconds``.
    """
    import threadpoolctl
    from implicit.cpu.als import AlternatingLeastSquares

    matrix = user_item_matrix(train, binary=False)
    history: list[dict] = []
    clock = {"excluded": 0.0}

    def callback(iteration, _elapsed, _loss):
        elapsed = time.perf_counter() - started - clock["excluded"]
        history.append({"iteration": iteration + 1, "seconds": elapsed})
        if on_iteration is not None:
            paused = time.perf_counter()
            on_iteration(iteration + 1, model.user_factors, model.item_factors)
            clock["excluded"] += time.perf_counter() - paused

    # implicit warns (a RuntimeWarning, when it builds the model) if BLAS is multithreaded:
    # its own threads do the work, and BLAS threads on top of them oversubscribe the cores.
    with threadpoolctl.threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=factors,
            regularization=regularization,
            alpha=alpha,
            iterations=iterations,
            random_state=random_state,
            num_threads=num_threads,
        )
        started = time.perf_counter()
        model.fit(matrix, show_progress=False, callback=callback)
        fit_seconds = time.perf_counter() - started - clock["excluded"]
    return FittedPeer(
        name="als",
        params={
            "factors": factors,
            "regularization": regularization,
            "alpha": alpha,
            "iterations": iterations,
        },
        user_factors=np.asarray(model.user_factors, dtype=np.float32),
        item_factors=np.asarray(model.item_factors, dtype=np.float32),
        item_bias=np.zeros(train.num_items, dtype=np.float32),
        fit_seconds=fit_seconds,
        history=history,
    )


def fit(name: str, train: Interactions, params: dict) -> FittedPeer:
    """Fit peer ``name`` with hyperparameters ``params`` (an entry of :data:`GRIDS`)."""
    if name == "popularity":
        return popularity(train)
    if name == "ease":
        return ease(train, **params)
    if name == "als":
        return als(train, **params)
    raise ValueError(f"unknown peer {name!r}; choose from {', '.join(PEERS)}")
