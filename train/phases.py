"""The phases of one model's training: fit with validation and early stopping, then the refit.

:class:`TrainingRun` holds everything a checkpoint must restore (the current phase's trainer,
the history, the best epoch and its weights) and hands it to ``save`` after every epoch and
when training is asked to stop (:mod:`mfrec.train.search` writes the checkpoint).

Validation after each epoch scores every item for every validation user, which costs about as
much as an iALS iteration. So the per-epoch scores that early stopping and the choice of the
best epoch read come from at most :data:`MONITOR_USERS` validation users (a seeded sample, the
same for every epoch and every model); when the fit ends, the best epoch's weights are scored
once on **all** validation users, and those are the VALID metrics that choose between models
and that the final metric line, ``metrics.json`` and ``model.json`` report.

Distributed (:mod:`mfrec.train.distributed`): every process holds the same model, so rank 0
alone scores the validation users (each once) and broadcasts the metrics, and decides the
search's time limit by its own clock; every rank then takes the same early-stopping, best-epoch
and time-limit decisions.
"""

from __future__ import annotations

import copy
import gc
import logging
import time

import numpy as np

from mfrec.train import distributed
from mfrec.train.metric_lines import LINE_ORDER, format_line
from mfrec.train.metrics import evaluate
from mfrec.train.progress import ProgressBar
from mfrec.train.split import sample_users
from mfrec.train.trainers import make_trainer

logger = logging.getLogger(__name__)

# A fit whose validation score still improves at ``num_epochs`` goes on, by ``num_epochs`` at a
# time, up to this many times ``num_epochs`` in all.
MAX_EXTENSIONS = 4
# Validation users scored after each epoch (module docstring); the rest only at the end.
MONITOR_USERS = 10_000


def monitor_sample(holdout, seed: int, max_users: int | None = None):
    """``holdout`` restricted to at most ``max_users`` (default :data:`MONITOR_USERS`) of its
    users (seeded), or itself."""
    return sample_users(holdout, seed, MONITOR_USERS if max_users is None else max_users)


def evaluate_once(scorer, train, test, **kwargs) -> dict:
    """:func:`~mfrec.train.metrics.evaluate` on rank 0 alone, its metrics broadcast to every
    rank (the ranks hold the same model: each validation user is scored once)."""
    group = distributed.current()
    metrics = evaluate(scorer, train, test, **kwargs) if group.is_primary else None
    return group.broadcast(metrics)


class TrainingRun:
    """The state of one training run across its phases, checkpointed after every epoch."""

    def __init__(
        self,
        data,
        fit,
        holdout,
        config,
        device,
        out,
        should_stop,
        save=None,
        pop_metrics=None,  # computed once by the search for every candidate
        time_limit=None,
    ) -> None:
        self.data, self.fit, self.holdout = data, fit, holdout
        self.monitor = None if holdout is None else monitor_sample(holdout, config.seed)
        self.config, self.device, self.out, self.should_stop = config, device, out, should_stop
        self.save = save  # called with state_dict() after every epoch and on a stop
        self.label = None  # "model=<name>" in the metric lines when several models are fitted
        self.phase = "fit"
        self.fit_done = False
        self.epoch_limit = config.num_epochs  # raised while VALID improves (fit_phase)
        self.trainer = make_trainer(fit, config, device, horizon_epochs=config.num_epochs)
        self.history: list[dict] = []
        self.best_epoch: int | None = None
        self.best_ndcg = float("-inf")
        self.best_metrics: dict = {}
        self.best_state: dict | None = None
        self.evals_since_best = 0
        self.best_in_full = False  # best_metrics scored on every validation user
        # Seconds the fit phase may take (None: no limit); the search sets it (search.py).
        self.time_limit = time_limit
        self.fit_seconds = 0.0
        self.stopped_by_time_limit = False
        self.pop_metrics = pop_metrics or {}  # the popularity baseline's VALID metrics

    @property
    def refitted(self) -> bool:
        return self.phase == "refit" and self.trainer.epoch == self.best_epoch

    @property
    def final_epochs(self) -> int:
        if self.phase == "refit" or self.best_state is None:
            return self.trainer.epoch
        return self.best_epoch

    def train(self, refit: bool) -> bool:
        """Run the remaining phases; True when interrupted by ``should_stop``."""
        if self.phase == "fit":
            if self.fit_phase():
                return True
            if refit and self.best_epoch is not None:
                self.phase = "refit"
                self.trainer = None  # free the fit's data, model and optimizer state first
                gc.collect()
                self.trainer = make_trainer(
                    self.data, self.config, self.device, horizon_epochs=self.config.num_epochs
                )
        if self.phase == "refit":
            return self._epochs(self.best_epoch, evaluate_each=False)
        return False

    def fit_phase(self) -> bool:
        """Fit with validation and early stopping (or the rest of it); True when interrupted."""
        while not self.fit_done:
            if self._epochs(self.epoch_limit, evaluate_each=self.holdout is not None):
                return True
            if self.fit_done or not self._still_improving():
                self.fit_done = True
            else:  # no cap while VALID improves: early stopping decides
                self.epoch_limit += self.config.num_epochs
                logger.info(
                    "%s: VALID NDCG@10 improved in epoch %d, within the early-stopping "
                    "patience; training on to epoch %d (a cosine restart at a lower rate)",
                    self.config.model,
                    self.best_epoch,
                    self.epoch_limit,
                )
        self._validate_best_in_full()
        return False

    def _validate_best_in_full(self) -> None:
        """Score the best epoch's weights on every validation user (module docstring)."""
        if self.best_in_full or self.best_state is None:
            return
        if self.monitor is not self.holdout:
            model = copy.deepcopy(self.trainer.model)
            model.load_state_dict(self.best_state)
            started = time.perf_counter()
            self.best_metrics = evaluate_once(
                model, self.fit, self.holdout, progress=f"validating {self.config.model} (all)"
            )
            self.best_ndcg = self.best_metrics["ndcg@10"]
            logger.info(
                "%s: VALID NDCG@10 %.4f at epoch %d on all %d validation users (%.1f s; "
                "the per-epoch figures were on a sample of %d)",
                self.config.model,
                self.best_ndcg,
                self.best_epoch,
                self.best_metrics["num_users"],
                time.perf_counter() - started,
                len(np.unique(self.monitor.user_idx)),
            )
        self.best_in_full = True

    def _still_improving(self) -> bool:
        """Early stopping has not fired by the limit (VALID NDCG@10 improved within the last
        ``config.patience`` evaluations: ``early_stopping_patience``, scaled for large
        batches), and the extension limit is not reached."""
        return (
            self.holdout is not None
            and self.config.patience > 0
            and self.best_epoch is not None
            and self.epoch_limit < MAX_EXTENSIONS * self.config.num_epochs
        )

    def _epochs(self, num_epochs: int, evaluate_each: bool) -> bool:
        trainer, config = self.trainer, self.config
        steps = trainer.steps_per_epoch
        bar = ProgressBar(
            num_epochs * steps,
            f"{self.config.model} {self.phase}",
            initial=trainer.epoch * steps + trainer.batch,
        )
        phase_started, validation_seconds, first_epoch = time.perf_counter(), 0.0, trainer.epoch
        try:
            while trainer.epoch < num_epochs and not (self.phase == "fit" and self.fit_done):
                start = time.perf_counter()
                loss = trainer.run_epoch(self.should_stop, on_batch=bar.update)
                if loss is None:
                    self._checkpoint()
                    return True
                record = {"epoch": trainer.epoch}
                if self.label:
                    record["model"] = self.config.model
                if self.phase == "refit":
                    record["phase"] = "refit"
                record["train_loss"] = loss
                seconds = time.perf_counter() - start
                last = trainer.epoch == num_epochs
                if evaluate_each and (trainer.epoch % config.eval_every == 0 or last):
                    validation = time.perf_counter()
                    record.update(self._validate())
                    record["eval_seconds"] = time.perf_counter() - validation
                    validation_seconds += record["eval_seconds"]
                record["epoch_seconds"] = seconds
                if self.phase == "fit":
                    self.fit_seconds += time.perf_counter() - start
                    self._check_time_limit()
                bar.set_postfix(loss=f"{loss:.4g}")
                self.history.append(record)
                print(format_line(record), file=self.out, flush=True)
                self._checkpoint()
        finally:
            bar.close()
        logger.info(
            "%s %s: %d epochs in %.1f s (validation %.1f s)%s",
            self.config.model,
            self.phase,
            trainer.epoch - first_epoch,
            time.perf_counter() - phase_started,
            validation_seconds,
            f"; best VALID NDCG@10 {self.best_ndcg:.4f} at epoch {self.best_epoch}"
            if self.phase == "fit" and self.best_epoch
            else "",
        )
        return False

    def _check_time_limit(self) -> None:
        if self.time_limit is None or self.fit_done or self.best_epoch is None:
            return  # (no model to keep before an epoch is validated)
        # Rank 0's clock decides for every rank (the module docstring).
        if not distributed.current().broadcast(self.fit_seconds >= self.time_limit):
            return
        self.fit_done = self.stopped_by_time_limit = True
        logger.info(
            "%s fit: stopped by the search's time limit (%.0f s of %.0f s) after epoch %d; "
            "its best VALID epoch so far is kept (set search_time_factor=0 for no limit)",
            self.config.model,
            self.fit_seconds,
            self.time_limit,
            self.trainer.epoch,
        )

    def _validate(self) -> dict:
        metrics = evaluate_once(
            self.trainer.model, self.fit, self.monitor, progress=f"validating {self.config.model}"
        )
        if metrics["ndcg@10"] > self.best_ndcg:
            self.best_ndcg, self.best_epoch = metrics["ndcg@10"], self.trainer.epoch
            self.best_metrics = metrics
            weights = self.trainer.model.state_dict()
            self.best_state = {k: v.detach().clone() for k, v in weights.items()}
            self.evals_since_best = 0
        else:
            self.evals_since_best += 1
        patience = self.config.patience
        if patience and self.evals_since_best >= patience:
            self.fit_done = True
        values = {f"val_{name}": metrics[name] for name in LINE_ORDER}
        values["pop_ndcg@10"] = self.pop_metrics["ndcg@10"]
        return values

    def _checkpoint(self) -> None:
        if self.save is not None:
            self.save(self.state_dict())

    def state_dict(self) -> dict:
        return {
            "phase": self.phase,
            "fit_done": self.fit_done,
            "epoch_limit": self.epoch_limit,
            "trainer": self.trainer.state_dict(),
            "history": list(self.history),
            "best_epoch": self.best_epoch,
            "best_ndcg": self.best_ndcg,
            "best_metrics": dict(self.best_metrics),
            "best_state": self.best_state,
            "evals_since_best": self.evals_since_best,
            "best_in_full": self.best_in_full,
            "fit_seconds": self.fit_seconds,
            "stopped_by_time_limit": self.stopped_by_time_limit,
        }

    def resume(self, state: dict | None) -> None:
        if state is None:
            return
        self.phase, self.fit_done = state["phase"], state["fit_done"]
        self.epoch_limit = state["epoch_limit"]
        if self.phase == "refit":
            self.trainer = make_trainer(
                self.data, self.config, self.device, horizon_epochs=self.config.num_epochs
            )
        if "trainer" in state:  # absent from a finished fit's summary
            self.trainer.load_state_dict(state["trainer"])
        self.history = list(state["history"])
        self.best_epoch, self.best_ndcg = state["best_epoch"], state["best_ndcg"]
        self.best_metrics = dict(state["best_metrics"])
        self.best_state = state["best_state"]
        if self.best_state is not None:
            self.best_state = {k: v.to(self.device) for k, v in self.best_state.items()}
        self.evals_since_best = state["evals_since_best"]
        self.best_in_full = state.get("best_in_full", True)
        self.fit_seconds = state.get("fit_seconds", 0.0)
        self.stopped_by_time_limit = state.get("stopped_by_time_limit", False)
        if "trainer" in state:
            logger.info(
                "resumed: %s, phase %s, epoch %d, batch %d",
                self.config.model,
                self.phase,
                self.trainer.epoch,
                self.trainer.batch,
            )

    def final_arrays(self) -> dict:
        """The weights to serve: the refit model, else the best validated one, else the last."""
        state = self.trainer.model.state_dict()
        if not self.refitted and self.best_state is not None:
            state = self.best_state
        if hasattr(self.trainer, "export_arrays"):  # the sequence model: histories from data
            return self.trainer.export_arrays(state, self.data)
        return {name: value.detach().cpu().float().numpy() for name, value in state.items()}

    def print_final(self, metrics: dict) -> None:
        values = {}
        if metrics["mfrec"]:
            values.update({f"val_{name}": metrics["mfrec"][name] for name in LINE_ORDER})
            values.update({f"pop_{name}": metrics["popularity"][name] for name in LINE_ORDER})
            values["best_epoch"] = metrics["best_epoch"]
        elif self.history:
            values["train_loss"] = self.history[-1]["train_loss"]
        values["epochs_trained"] = metrics["epochs_trained"]
        values["refit"] = str(metrics["refit"]).lower()
        values["model"] = self.config.model
        print(format_line(values, prefix="final: "), file=self.out, flush=True)
