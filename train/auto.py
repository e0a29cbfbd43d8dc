"""Choices made by probing the validation data before the real fit: what ``auto`` leaves open.

:func:`resolve` turns a configuration with ``auto`` values into the candidates to fit:

- ``model=auto`` gives two candidates, iALS and the SGD model. Both are then fitted on the
  validation split (:mod:`mfrec.train.phases`) and the better VALID NDCG@10 wins: a short probe
  of the SGD model says too little about where its full schedule ends (on MovieLens 100K a
  5-epoch probe scores 0.145 and the full fit 0.169, while iALS is near its best after a few
  iterations), so the models are compared fully trained, not by probes.
- ``recency_min_weight=auto`` (each model): recency weighting is the biggest single gain on data
  whose tastes drift (MovieLens) and a loss where they are static (mfrec's synthetic default);
  see ``benchmarks/NOTES.md``. The SGD model's is chosen by two short fits
  (:data:`SGD_PROBE_EPOCHS` epochs, weighting 0 and 1); iALS's inside its own search.
- ``unobserved_weight`` and ``regularization`` (iALS) are chosen by a coordinate search:
  start at the defaults, try the recency weighting, then move the regularisation and the
  unobserved weight by factors of :data:`STEP` while VALID improves, and once more
  (:data:`SEARCH_ROUNDS`) if that moved them: the best λ depends on α0. An iALS probe is cheap: at
  most :data:`IALS_PROBE_ITERATIONS` iterations, each scored.

Probes train on at most :data:`PROBE_USERS` validation users' fit interactions (seeded) and
are scored on all of them, so their cost is bounded whatever the data size. (Scoring only 2,000
of them halved the probes' scoring time on synthetic 1M, but on the panel's long-tail member the
noisier scores chose another iALS configuration, 8% worse on TEST: see ``benchmarks/NOTES.md``.)
In a distributed job rank 0 alone scores a probe and broadcasts the result, so every rank takes
the same decisions. Every finished probe is recorded in ``done``
(checkpointed by the caller), so a resumed job does not run it again; a probe cut short by
``should_stop`` is not recorded. An iALS probe ends early once its score has fallen
:data:`PROBE_PATIENCE` iterations in a row (its best is then behind it: iALS's VALID curve
rises to one peak and falls as it overfits). Without validation data nothing is probed:
``model=auto`` means ``sgd``, recency weighting 0, the iALS values their defaults.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable

import numpy as np
import torch

from mfrec.train.config import TrainConfig
from mfrec.train.interactions import Interactions
from mfrec.train.phases import evaluate_once
from mfrec.train.progress import ProgressBar
from mfrec.train.split import sample_users
from mfrec.train.trainers import (
    DEFAULT_REGULARIZATION,
    DEFAULT_UNOBSERVED_WEIGHT,
    make_trainer,
)

logger = logging.getLogger(__name__)

CANDIDATES = (0.0, 1.0)  # recency_min_weight
SGD_PROBE_EPOCHS = 5
IALS_PROBE_ITERATIONS = 10
STEP = 3.0
MAX_STEPS = 3  # moves per direction of the coordinate search
SEARCH_ROUNDS = 2
PROBE_USERS = 5_000
PROBE_PATIENCE = 2


class Interrupted(Exception):
    """``should_stop`` fired during a probe; the finished probes are in ``done``."""


def probe_sample(fit: Interactions, holdout: Interactions, seed: int, max_users: int):
    """``(fit, holdout)`` of at most ``max_users`` validation users (seeded): the probes train
    on those users' fit interactions only, so their cost is bounded whatever the data size."""
    holdout = sample_users(holdout, seed, max_users)
    keep = np.isin(fit.user_idx, np.unique(holdout.user_idx))
    return (fit, holdout) if keep.all() else (fit.subset(keep), holdout)


def fallback(config: TrainConfig) -> TrainConfig:
    """``config`` with every ``auto`` at its documented value without validation data (the
    iALS values only for iALS: the SGD model has no use for them)."""
    model = "sgd" if config.model == "auto" else config.model
    recency = 0.0 if config.recency_min_weight is None else config.recency_min_weight
    config = dataclasses.replace(config, model=model, recency_min_weight=recency)
    if model != "ials":
        return config
    return dataclasses.replace(
        config,
        unobserved_weight=config.unobserved_weight or DEFAULT_UNOBSERVED_WEIGHT,
        regularization=config.regularization or DEFAULT_REGULARIZATION,
    )


def resolve(
    fit: Interactions,
    holdout: Interactions | None,
    config: TrainConfig,
    device: torch.device,
    should_stop: Callable[[], bool] = lambda: False,
    done: dict | None = None,
    on_probe: Callable[[dict], None] = lambda done: None,
) -> list[TrainConfig]:
    """The candidate configurations to fit, every ``auto`` resolved (one per model).

    ``done`` maps a probe's key to its result and is filled as probes finish; ``on_probe``
    is called with it after each one (to checkpoint it).

    Raises
    ------
    Interrupted
        ``should_stop()`` became true during a probe.
    """
    models = ["ials", "sgd"] if config.model == "auto" else [config.model]
    if holdout is None or len(holdout) == 0:
        if _has_auto(config):
            logger.info("auto: no validation data to probe; using %s", _describe(fallback(config)))
        return [fallback(config)]
    prober = _Prober(fit, holdout, config, device, should_stop, done, on_probe)
    candidates = []
    for model in models:
        resolved = dataclasses.replace(config, model=model)
        search = prober.ials if model == "ials" else prober.sgd
        candidates.append(search(resolved))
    return candidates


def _falling(scores: list[float]) -> bool:
    """The last :data:`PROBE_PATIENCE` scores each fell below the one before."""
    tail = scores[-PROBE_PATIENCE - 1 :]
    falls = [later < earlier for earlier, later in zip(tail[:-1], tail[1:], strict=True)]
    return len(tail) > PROBE_PATIENCE and all(falls)


def report(done: dict) -> list[dict]:
    """The probes that ran, for the logs and ``model.json``: settings, VALID NDCG@10, seconds."""
    return [dict(result) for result in done.values()]


def _has_auto(config: TrainConfig) -> bool:
    values = (config.recency_min_weight, config.unobserved_weight, config.regularization)
    return config.model == "auto" or any(value is None for value in values)


def _describe(config: TrainConfig) -> str:
    if config.model == "ials":
        return (
            f"ials (unobserved_weight={config.unobserved_weight:g}, regularization="
            f"{config.regularization:g}, recency_min_weight={config.recency_min_weight:g})"
        )
    return f"{config.model} (recency_min_weight={config.recency_min_weight:g})"


class _Prober:
    """Runs probes on the sampled validation users, reusing those already in ``done``."""

    def __init__(self, fit, holdout, config, device, should_stop, done, on_probe) -> None:
        self.fit, self.holdout = probe_sample(fit, holdout, config.seed, PROBE_USERS)
        self.device, self.should_stop = device, should_stop
        self.done = {} if done is None else done
        self.on_probe = on_probe
        self.users = len(np.unique(self.holdout.user_idx))

    def sgd(self, config: TrainConfig) -> TrainConfig:
        """The SGD model with its recency weighting chosen by two short fits."""
        if config.recency_min_weight is not None:
            return fallback(config)
        epochs = min(config.num_epochs, SGD_PROBE_EPOCHS)
        short = dataclasses.replace(
            config, num_epochs=epochs, warmup_epochs=min(config.warmup_epochs, epochs)
        )
        scores = {
            w: self.score(dataclasses.replace(short, recency_min_weight=w), epochs)
            for w in CANDIDATES
        }
        chosen = max(CANDIDATES, key=lambda weight: scores[weight])  # the first on a tie
        return fallback(dataclasses.replace(config, recency_min_weight=chosen))

    def ials(self, config: TrainConfig) -> TrainConfig:
        """iALS with its auto values chosen by a coordinate search (module docstring)."""
        best = fallback(config)
        if not _has_auto(dataclasses.replace(config, model="ials")):
            return best
        best_score = self.score(best, IALS_PROBE_ITERATIONS)
        if config.recency_min_weight is None:
            other = dataclasses.replace(best, recency_min_weight=CANDIDATES[1])
            if (score := self.score(other, IALS_PROBE_ITERATIONS)) > best_score:
                best, best_score = other, score
        names = [n for n in ("regularization", "unobserved_weight") if getattr(config, n) is None]
        for _ in range(SEARCH_ROUNDS):  # again while a round moved: the two interact
            start = best
            for name in names:
                best, best_score = self._line_search(best, best_score, name)
            if best == start:
                break
        return best

    def _line_search(self, best, best_score, name):
        for factor in (STEP, 1 / STEP):
            for _ in range(MAX_STEPS):
                trial = dataclasses.replace(best, **{name: getattr(best, name) * factor})
                score = self.score(trial, IALS_PROBE_ITERATIONS)
                if score <= best_score:
                    break
                best, best_score = trial, score
        return best, best_score

    def score(self, config: TrainConfig, epochs: int) -> float:
        """VALID NDCG@10 of ``config`` trained ``epochs`` epochs on the sample (the best over
        its iterations for iALS, which is scored after each); cached in ``done``."""
        settings = {
            name: getattr(config, name)
            for name in ("model", "recency_min_weight", "unobserved_weight", "regularization")
        }
        if config.model == "sgd":
            del settings["unobserved_weight"], settings["regularization"]
        key = json.dumps(settings, sort_keys=True)
        if key in self.done:
            return self.done[key]["ndcg@10"]
        started = time.perf_counter()
        trainer = make_trainer(self.fit, config, self.device, horizon_epochs=epochs)
        bar = ProgressBar(epochs * trainer.steps_per_epoch, f"probe {config.model}")
        scores = []
        for _ in range(epochs):
            if trainer.run_epoch(self.should_stop, on_batch=bar.update) is None:
                bar.close()
                raise Interrupted
            if config.model == "ials" or trainer.epoch == epochs:
                scores.append(evaluate_once(trainer.model, self.fit, self.holdout, k=10)["ndcg@10"])
            if _falling(scores):
                break
        bar.close()
        result = {
            **settings,
            "ndcg@10": max(scores),
            "epochs": epochs if config.model == "sgd" else int(np.argmax(scores)) + 1,
            "iterations": trainer.epoch,
            "users": self.users,
            "seconds": round(time.perf_counter() - started, 3),
        }
        self.done[key] = result
        self.on_probe(self.done)
        logger.info("auto probe: %s", json.dumps(result, sort_keys=True))
        return result["ndcg@10"]
