"""Training with ``auto``: probes, then a fit of each candidate model, then the winner's refit.

:class:`ModelSearch` runs the steps of a training job after the validation split:

1. **probes** (:func:`mfrec.train.auto.resolve`): every ``auto`` hyperparameter resolved into
   one candidate configuration per model (one candidate when ``model`` is given);
2. **fits**: each candidate's fit phase on the validation split (:class:`TrainingRun`: epochs,
   VALID NDCG@10 after each, early stopping), one after the other;
3. **winner**: the candidate with the best VALID NDCG@10 (the first on a tie);
4. **refit** of the winner on all the data (automatic hold-out with ``refit=true``), else its
   best fit epoch is kept.

**The time limit.** iALS is fitted first; it is cheap and near its best within a few
iterations, while the SGD model's full schedule can take many times longer (on 1M synthetic
interactions, 270 s against iALS's 40 s, to end 2% below it). So a later candidate's probes
and fit together may take at most ``search_time_factor`` times what the first candidate's took
(probes and fit), and never less than :data:`MIN_LIMIT_SECONDS`; a fit that reaches its limit
stops there and keeps its best validated epoch (logged, and marked in ``model_search``).
Fit data under :data:`MIN_LIMIT_INTERACTIONS` interactions is never limited: there every
candidate's full schedule takes a minute or two, and a wall-clock limit would make the model
depend on how busy the machine is (on a machine running eight other jobs, the panel's 75K-row
synthetic member had its SGD fit cut at epoch 10 of 15). ``search_time_factor=0`` removes the
limit; with it, as with any wall-clock limit, the result can depend on the machine's speed (the
limit is checkpointed, so a resumed job keeps it).

Everything a restart needs is checkpointed after every probe and every epoch: finished probes,
the candidates once resolved, each finished fit (its history, best epoch, metrics and best
weights) and the state of the run in progress. A resumed job continues where it stopped and
never repeats a finished probe or fit.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from mfrec.train import auto, distributed
from mfrec.train.checkpoint import save_checkpoint
from mfrec.train.config import TrainConfig
from mfrec.train.metrics import evaluate_popularity
from mfrec.train.phases import TrainingRun

logger = logging.getLogger(__name__)

MIN_LIMIT_SECONDS = 60.0
MIN_LIMIT_INTERACTIONS = 500_000  # fit data smaller than this is never time-limited


class ModelSearch:
    """The whole run of :func:`mfrec.train.pipeline.train_model` after the split."""

    def __init__(self, data, fit, holdout, config, device, out, should_stop) -> None:
        self.data, self.fit, self.holdout = data, fit, holdout
        self.config, self.device, self.out, self.should_stop = config, device, out, should_stop
        self.fingerprint: dict = {}
        self.checkpoint_dir = None
        self.probes: dict = {}
        self.candidates: list[TrainConfig] | None = None
        self.fits: dict[str, dict] = {}  # model -> finished fit (TrainingRun state, no trainer)
        self.pending: dict | None = None  # the state of the run in progress
        self.run: TrainingRun | None = None
        self._pop_metrics: dict | None = None  # the same for every candidate: computed once

    # --- steps ------------------------------------------------------------------------------

    def train(self, refit: bool) -> bool:
        """Run the remaining steps; True when interrupted by ``should_stop``."""
        if self.candidates is None:
            try:
                self.candidates = auto.resolve(
                    self.fit,
                    self.holdout,
                    self.config,
                    self.device,
                    self.should_stop,
                    self.probes,
                    on_probe=lambda done: self._save(),
                )
            except auto.Interrupted:
                self._save()
                return True
            if self.probes:  # a resumed job then skips them
                self._save()
        for candidate in self.candidates:
            if candidate.model in self.fits:
                continue
            self.run = self._training_run(candidate, self.pending)
            self.pending = None
            started = time.perf_counter()
            if self.run.fit_phase():
                return True
            self.fits[candidate.model] = self._summary(self.run, time.perf_counter() - started)
            self._save()
        winner = self.winner
        if self.run is None or self.run.config.model != winner.model:
            self.run = self._training_run(winner, self.fits[winner.model])
        if len(self.candidates) > 1:
            logger.info("auto: %s wins (%s)", winner.model, self._scores())
        return self.run.train(refit=refit)

    @property
    def winner(self) -> TrainConfig:
        """The candidate with the best VALID NDCG@10 (the first on a tie)."""
        return max(self.candidates, key=lambda c: self.fits[c.model]["best_ndcg"])

    def _training_run(self, config: TrainConfig, state: dict | None) -> TrainingRun:
        if self._pop_metrics is None and self.holdout is not None:
            group = distributed.current()
            if group.is_primary:  # broadcast: every rank must agree (phases.evaluate_once)
                self._pop_metrics = evaluate_popularity(self.fit, self.holdout, device=self.device)
            self._pop_metrics = group.broadcast(self._pop_metrics)
        run = TrainingRun(
            self.data,
            self.fit,
            self.holdout,
            config,
            self.device,
            self.out,
            self.should_stop,
            save=self._save_run,
            pop_metrics=self._pop_metrics,
            time_limit=self._time_limit(config),
        )
        run.label = len(self.candidates) > 1
        run.resume(state)
        return run

    def _time_limit(self, config: TrainConfig) -> float | None:
        """Seconds the fit of ``config`` may take (module docstring), or None."""
        first = self.candidates[0].model
        factor = self.config.search_time_factor
        if not factor or config.model == first or first not in self.fits:
            return None
        if len(self.fit) < MIN_LIMIT_INTERACTIONS:
            return None
        first_cost = self._probe_seconds(first) + self.fits[first]["seconds"]
        allowed = max(MIN_LIMIT_SECONDS, factor * first_cost)
        return max(0.0, allowed - self._probe_seconds(config.model))

    def _probe_seconds(self, model: str) -> float:
        return sum(p["seconds"] for p in self.probes.values() if p["model"] == model)

    @staticmethod
    def _summary(run: TrainingRun, seconds: float) -> dict:
        summary = run.state_dict()
        del summary["trainer"]  # the fit is over: its optimizer state is not needed again
        summary["seconds"] = seconds
        return summary

    def _scores(self) -> str:
        return ", ".join(
            f"{model}: VALID NDCG@10 {fit['best_ndcg']:.4f} at epoch {fit['best_epoch']}"
            for model, fit in self.fits.items()
        )

    # --- what the job reports ---------------------------------------------------------------

    def metrics(self) -> dict:
        """The search's part of the job's metrics: the probes and every candidate's fit."""
        found = {"model": self.run.config.model if self.run else self.config.model}
        if self.probes:
            found["probes"] = auto.report(self.probes)
        if len(self.fits) > 1:
            found["model_search"] = {
                model: {
                    "ndcg@10": fit["best_ndcg"],
                    "best_epoch": fit["best_epoch"],
                    "seconds": round(fit["seconds"], 3),
                    **({"stopped_by_time_limit": True} if fit.get("stopped_by_time_limit") else {}),
                }
                for model, fit in self.fits.items()
            }
        return found

    @property
    def history(self) -> list[dict]:
        """Every epoch trained, the candidates' fits first (the winner's refit last)."""
        done = [record for model, fit in self.fits.items() for record in fit["history"]]
        if self.run is not None and self.run.config.model not in self.fits:
            return done + self.run.history
        refit = [r for r in (self.run.history if self.run else []) if r.get("phase") == "refit"]
        return done + refit

    # --- checkpoints ------------------------------------------------------------------------

    def _save_run(self, run_state: dict) -> None:
        self.pending = run_state
        self._save()
        self.pending = None

    def _save(self) -> None:
        if self.checkpoint_dir is None or not distributed.current().is_primary:
            return  # distributed: rank 0 alone writes (every rank holds the same state)
        state = {
            "fingerprint": self.fingerprint,
            "probes": self.probes,
            "candidates": None
            if self.candidates is None
            else [dataclasses.asdict(c) for c in self.candidates],
            "fits": self.fits,
            "run": self.pending,
            "run_model": None if self.run is None else self.run.config.model,
        }
        save_checkpoint(self.checkpoint_dir, state)

    def resume(self, state: dict | None) -> None:
        if state is None:
            return
        self.probes = dict(state["probes"])
        if state["candidates"] is not None:
            self.candidates = [TrainConfig(**c) for c in state["candidates"]]
        self.fits = dict(state["fits"])
        # Refit state of a finished search sits in "run" with the winner's model.
        self.pending = state["run"]
        if self.pending is not None and state["run_model"] in self.fits:
            winner = next(c for c in self.candidates if c.model == state["run_model"])
            self.run = self._training_run(winner, self.pending)
            self.pending = None
        logger.info(
            "resumed: %d probes and %d fits done%s",
            len(self.probes),
            len(self.fits),
            "" if self.run is None else f"; the {self.run.config.model} refit in progress",
        )
