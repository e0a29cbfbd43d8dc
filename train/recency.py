"""Recency weighting: a user's older interactions count less in training.

``recency_min_weight`` (a hyperparameter) sets the weight of each user's oldest interaction;
the newest weighs 1. Which value suits a dataset is chosen by :mod:`mfrec.train.auto` when the
hyperparameter is ``auto``.
"""

from __future__ import annotations

import numpy as np

from mfrec.train.interactions import Interactions
from mfrec.train.split import user_rank


def recency_weights(data: Interactions, min_weight: float) -> np.ndarray:
    """Per-row training weights rising linearly with recency within each user.

    A user's newest interaction weighs 1 and their oldest about ``min_weight``:
    ``min_weight + (1 - min_weight) * user_rank``. Recent interactions say more about what a
    user will do next, and the seed protocol's test items are each user's newest ones.

    Returns
    -------
    ndarray of float32, shape (len(data),)
    """
    rank = user_rank(data, "recency weighting")
    return (min_weight + (1.0 - min_weight) * rank).astype(np.float32)


def training_weights(data: Interactions, min_weight: float | None) -> np.ndarray | None:
    """Per-interaction training weights: the data's own (event values) times recency weights.

    ``min_weight`` None ("auto" not yet resolved, e.g. a trainer built directly) means 0, the
    value ``auto`` falls back to without validation data; 1 disables the weighting. Returns
    None when every weight is 1.
    """
    weights = data.weights
    min_weight = 0.0 if min_weight is None else min_weight
    if min_weight < 1.0:
        recency = recency_weights(data, min_weight)
        weights = recency if weights is None else weights * recency
    return weights
