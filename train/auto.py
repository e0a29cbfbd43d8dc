"""Choices made by probing the validation data before the real fit.

``recency_min_weight=auto``: choose the recency weighting (:mod:`mfrec.train.recency`) by a short
probe on the hold-out.

Weighting a user's older interactions down (``recency_min_weight=0``) is the biggest single gain
on data whose tastes drift (MovieLens 100K: VALID NDCG@10 0.169 against 0.128 without it), and a
loss on data whose tastes are static (mfrec's synthetic default dataset: 0.161 against 0.203);
see ``benchmarks/NOTES.md``. Which kind of data a job has is an empirical question, so ``auto``
asks the validation data: it trains a short model (:data:`PROBE_EPOCHS` epochs, the same
schedule shape) with each candidate weighting on at most :data:`PROBE_USERS` users' fit
interactions, scores their validation interactions, and keeps the better weighting (the first
candidate on a tie). Without validation data it keeps the first candidate, 0.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

import numpy as np
import torch

from mfrec.train.config import TrainConfig
from mfrec.train.interactions import Interactions
from mfrec.train.loop import Trainer
from mfrec.train.metrics import evaluate

logger = logging.getLogger(__name__)

CANDIDATES = (0.0, 1.0)
PROBE_EPOCHS = 5
PROBE_USERS = 5_000


def probe_sample(fit: Interactions, holdout: Interactions, seed: int, max_users: int):
    """``(fit, holdout)`` of at most ``max_users`` validation users (seeded): the probes train
    on those users' fit interactions only, so their cost is bounded whatever the data size."""
    users = np.unique(holdout.user_idx)
    if len(users) > max_users:
        users = np.random.default_rng(seed).choice(users, max_users, replace=False)
        holdout = holdout.subset(np.isin(holdout.user_idx, users))
    keep = np.isin(fit.user_idx, users)
    return (fit, holdout) if keep.all() else (fit.subset(keep), holdout)


def choose_recency(
    fit: Interactions,
    holdout: Interactions | None,
    config: TrainConfig,
    device: torch.device,
    should_stop: Callable[[], bool] = lambda: False,
) -> tuple[TrainConfig, dict]:
    """``config`` with ``recency_min_weight`` resolved, and what the probe measured.

    Returns the config unchanged when the weighting was given. The second value is
    ``{"chosen": weight, "probe_ndcg@10": {"0": NDCG@10, "1": NDCG@10}, "probe_users": n,
    "probe_seconds": s}`` (empty when nothing was probed).
    """
    if config.recency_min_weight is not None:
        return config, {}
    first = CANDIDATES[0]
    if holdout is None or len(holdout) == 0:
        logger.info("recency_min_weight=auto: no validation data to probe; using %g", first)
        return dataclasses.replace(config, recency_min_weight=first), {}
    started = time.perf_counter()
    fit_sample, holdout_sample = probe_sample(fit, holdout, config.seed, PROBE_USERS)
    epochs = min(config.num_epochs, PROBE_EPOCHS)
    scores = {}
    for weight in CANDIDATES:
        probe = dataclasses.replace(
            config,
            recency_min_weight=weight,
            num_epochs=epochs,
            warmup_epochs=min(config.warmup_epochs, epochs),
        )
        trainer = Trainer(fit_sample, probe, device, horizon_epochs=epochs)
        for _ in range(epochs):
            if trainer.run_epoch(should_stop) is None:
                logger.info("recency_min_weight=auto: probe interrupted; using %g", first)
                return dataclasses.replace(config, recency_min_weight=first), {}
        scores[weight] = evaluate(trainer.model, fit_sample, holdout_sample, k=10)["ndcg@10"]
    chosen = max(CANDIDATES, key=lambda weight: scores[weight])  # the first on a tie
    users = len(np.unique(holdout_sample.user_idx))
    logger.info(
        "recency_min_weight=auto: %s after %d-epoch probes on %d validation users; using %g",
        ", ".join(f"{weight:g} -> NDCG@10 {score:.4f}" for weight, score in scores.items()),
        epochs,
        users,
        chosen,
    )
    probed = {f"{weight:g}": score for weight, score in scores.items()}
    report = {
        "chosen": chosen,
        "probe_ndcg@10": probed,
        "probe_users": users,
        "probe_seconds": time.perf_counter() - started,
    }
    return dataclasses.replace(config, recency_min_weight=chosen), report
