"""Training from interactions to a model artifact: validation, early stopping, refit, progress.

``train_model`` is the one entry point that ``mfrec train`` (and the SageMaker job) calls:

1. Validation data: ``valid`` when given (re-indexed onto the training id maps), otherwise the
   last ``validation_fraction`` of each user's interactions (the seed protocol's hold-out).
2. Fit: up to ``num_epochs`` epochs, validation NDCG@10 after every ``eval_every`` epochs,
   stopping after ``early_stopping_patience`` evaluations without improvement.
3. Refit (automatic hold-out and ``refit=True`` only): retrain from scratch on *all* the data
   for the best number of epochs, so the served model also knows each user's newest
   interactions. Its validation metrics cannot be measured (it has seen the hold-out); the
   reported ones are those of the best fit epoch. With ``refit=False``, or with a ``valid``
   set (the model then trained on all of ``data`` already), the best fit epoch's weights are
   kept instead.

Every epoch prints one flushed line on ``out`` that :data:`METRIC_DEFINITIONS` parses, e.g.
``epoch=3; train_loss=4.1230; val_ndcg@10=0.071200; ...; pop_ndcg@10=0.063900;
epoch_seconds=1.23;`` (refit epochs carry ``phase=refit;`` and no validation values), then a
final line ``final: val_ndcg@10=...; ...; best_epoch=12; epochs_trained=12;``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mfrec.train.artifact import ModelArtifact
from mfrec.train.checkpoint import fingerprint, load_latest, save_checkpoint
from mfrec.train.config import TrainConfig
from mfrec.train.interactions import Interactions
from mfrec.train.loop import Trainer, resolve_device
from mfrec.train.metrics import METRIC_NAMES, evaluate, evaluate_popularity
from mfrec.train.progress import ProgressBar, format_line
from mfrec.train.split import align_to, temporal_split

logger = logging.getLogger("mfrec.train")

_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
METRIC_DEFINITIONS = (
    [
        {"Name": "train:loss", "Regex": rf"\bepoch=\d+;.*? train_loss={_NUMBER};"},
        {"Name": "train:epoch_seconds", "Regex": rf"\bepoch=\d+;.*? epoch_seconds={_NUMBER};"},
        {"Name": "popularity:ndcg@10", "Regex": rf"\bepoch=\d+;.*? pop_ndcg@10={_NUMBER};"},
    ]
    + [
        {"Name": f"validation:{name}", "Regex": rf"\bepoch=\d+;.*? val_{name}={_NUMBER};"}
        for name in METRIC_NAMES
    ]
    + [
        {"Name": f"final:{side}:{name}", "Regex": rf"final: .*?\b{prefix}_{name}={_NUMBER};"}
        for side, prefix in (("validation", "val"), ("popularity", "pop"))
        for name in METRIC_NAMES
    ]
)
"""SageMaker ``MetricDefinitions`` for the progress lines (30 of the allowed 40). For tuning
jobs use ``final:validation:ndcg@10``: it is printed once, after training."""


@dataclass
class TrainResult:
    """What :func:`train_model` produced.

    ``artifact`` is the model to save (when ``interrupted``, the best model so far: usable,
    not final); ``history`` has one dict per trained epoch; ``metrics`` holds the validation
    metrics of mfrec and of the popularity baseline (``{"mfrec": {...}, "popularity": {...},
    "best_epoch": int | None, ...}``; empty metric dicts without validation data).
    """

    artifact: ModelArtifact
    history: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    interrupted: bool = False


def train_model(
    data: Interactions,
    config: TrainConfig,
    valid: Interactions | None = None,
    *,
    checkpoint_dir=None,
    should_stop: Callable[[], bool] = lambda: False,
    out=sys.stdout,
) -> TrainResult:
    """Train a model on ``data`` (see the module docstring for the phases).

    Parameters
    ----------
    data : Interactions
        All training interactions; the artifact's id maps, popularity and seen items come
        from it.
    config : TrainConfig
    valid : Interactions, optional
        A separate validation set (any id maps; unknown users and items are dropped).
    checkpoint_dir : path, optional
        Resume from the newest matching checkpoint there, and write one after every epoch and
        when ``should_stop`` fires.
    should_stop : callable
        Checked between batches; when it returns True, a checkpoint is written and the
        function returns with ``interrupted=True``.
    out : text stream
        Receives the per-epoch and final metric lines.

    Raises
    ------
    TrainingDivergedError
        The loss or the weights became NaN or infinite.
    """
    device = resolve_device(config.device)
    logger.info("training config: %s", json.dumps(config.to_dict(), sort_keys=True))
    fit, holdout, source, dropped = _validation_data(data, valid, config)
    run = _Run(data, fit, holdout, config, device, out, should_stop)
    run.fingerprint = fingerprint(data, valid, config, device)
    run.checkpoint_dir = checkpoint_dir
    run.resume(load_latest(checkpoint_dir, run.fingerprint))
    interrupted = run.train(refit=source == "holdout" and config.refit)
    metrics = {
        "mfrec": run.best_metrics,
        "popularity": run.pop_metrics,
        "best_epoch": run.best_epoch,
        "epochs_trained": run.final_epochs,
        "validation": source,
        "refit": run.refitted,
        **({"validation_dropped": dropped} if dropped else {}),
    }
    if not interrupted:
        run.print_final(metrics)
    artifact = ModelArtifact(
        **run.final_arrays(),
        user_ids=data.user_ids,
        item_ids=data.item_ids,
        item_popularity=data.item_counts(),
        seen_indptr=(csr := data.to_csr())[0],
        seen_indices=csr[1],
        config=config.to_dict(),
        metrics=metrics,
    )
    return TrainResult(artifact, run.history, metrics, interrupted)


def _validation_data(data, valid, config):
    """(fit data, validation data or None, source name, dropped-row counts or None)."""
    if valid is not None:
        if not (
            len(valid.user_ids) == data.num_users
            and len(valid.item_ids) == data.num_items
            and (valid.user_ids == data.user_ids).all()
            and (valid.item_ids == data.item_ids).all()
        ):
            valid, dropped = align_to(valid, data)
            logger.info("validation set re-indexed onto the training ids: %s", dropped)
        else:
            dropped = None
        if len(valid):
            return data, valid, "channel", dropped
        logger.warning(
            "the validation set shares no user and item with the training data; "
            "training without validation"
        )
        return data, None, "none", dropped
    if config.validation_fraction > 0:
        fit, holdout = temporal_split(data, config.validation_fraction)
        if len(holdout):
            return fit, holdout, "holdout", None
        logger.warning(
            "no user has enough interactions for a hold-out; training without validation"
        )
    return data, None, "none", None


class _Run:
    """The state of one training run across its phases, checkpointed after every epoch."""

    def __init__(self, data, fit, holdout, config, device, out, should_stop) -> None:
        self.data, self.fit, self.holdout = data, fit, holdout
        self.config, self.device, self.out, self.should_stop = config, device, out, should_stop
        self.fingerprint: dict = {}
        self.checkpoint_dir = None
        self.phase = "fit"
        self.fit_done = False
        self.trainer = Trainer(fit, config, device, horizon_epochs=config.num_epochs)
        self.history: list[dict] = []
        self.best_epoch: int | None = None
        self.best_ndcg = float("-inf")
        self.best_metrics: dict = {}
        self.best_state: dict | None = None
        self.evals_since_best = 0
        self.pop_metrics = evaluate_popularity(fit, holdout, device=device) if holdout else {}

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
            if self._fit():
                return True
            if refit and self.best_epoch is not None:
                self.phase = "refit"
                self.trainer = Trainer(
                    self.data, self.config, self.device, horizon_epochs=self.config.num_epochs
                )
        if self.phase == "refit":
            return self._epochs(self.best_epoch, evaluate_each=False)
        return False

    def _fit(self) -> bool:
        if self.fit_done:
            return False
        interrupted = self._epochs(self.config.num_epochs, evaluate_each=self.holdout is not None)
        self.fit_done = not interrupted
        return interrupted

    def _epochs(self, num_epochs: int, evaluate_each: bool) -> bool:
        trainer, config = self.trainer, self.config
        steps = trainer.steps_per_epoch
        bar = ProgressBar(
            num_epochs * steps, self.phase, initial=trainer.epoch * steps + trainer.batch
        )
        try:
            while trainer.epoch < num_epochs and not (self.phase == "fit" and self.fit_done):
                start = time.perf_counter()
                loss = trainer.run_epoch(self.should_stop, on_batch=bar.update)
                if loss is None:
                    self._checkpoint()
                    return True
                record = {"epoch": trainer.epoch}
                if self.phase == "refit":
                    record["phase"] = "refit"
                record["train_loss"] = loss
                seconds = time.perf_counter() - start
                last = trainer.epoch == num_epochs
                if evaluate_each and (trainer.epoch % config.eval_every == 0 or last):
                    record.update(self._validate())
                record["epoch_seconds"] = seconds
                bar.set_postfix(loss=f"{loss:.4g}")
                self.history.append(record)
                print(format_line(record), file=self.out, flush=True)
                self._checkpoint()
        finally:
            bar.close()
        return False

    def _validate(self) -> dict:
        metrics = evaluate(self.trainer.model, self.fit, self.holdout)
        if metrics["ndcg@10"] > self.best_ndcg:
            self.best_ndcg, self.best_epoch = metrics["ndcg@10"], self.trainer.epoch
            self.best_metrics = metrics
            weights = self.trainer.model.state_dict()
            self.best_state = {k: v.detach().clone() for k, v in weights.items()}
            self.evals_since_best = 0
        else:
            self.evals_since_best += 1
        patience = self.config.early_stopping_patience
        if patience and self.evals_since_best >= patience:
            self.fit_done = True
        values = {f"val_{name}": metrics[name] for name in METRIC_NAMES}
        values["pop_ndcg@10"] = self.pop_metrics["ndcg@10"]
        return values

    def _checkpoint(self) -> None:
        if self.checkpoint_dir is None:
            return
        state = {
            "fingerprint": self.fingerprint,
            "phase": self.phase,
            "fit_done": self.fit_done,
            "trainer": self.trainer.state_dict(),
            "history": self.history,
            "best_epoch": self.best_epoch,
            "best_ndcg": self.best_ndcg,
            "best_metrics": self.best_metrics,
            "best_state": self.best_state,
            "evals_since_best": self.evals_since_best,
        }
        save_checkpoint(self.checkpoint_dir, state)

    def resume(self, state: dict | None) -> None:
        if state is None:
            return
        self.phase, self.fit_done = state["phase"], state["fit_done"]
        if self.phase == "refit":
            self.trainer = Trainer(
                self.data, self.config, self.device, horizon_epochs=self.config.num_epochs
            )
        self.trainer.load_state_dict(state["trainer"])
        self.history = list(state["history"])
        self.best_epoch, self.best_ndcg = state["best_epoch"], state["best_ndcg"]
        self.best_metrics = dict(state["best_metrics"])
        self.best_state = state["best_state"]
        if self.best_state is not None:
            self.best_state = {k: v.to(self.device) for k, v in self.best_state.items()}
        self.evals_since_best = state["evals_since_best"]
        logger.info(
            "resumed: phase %s, epoch %d, batch %d",
            self.phase,
            self.trainer.epoch,
            self.trainer.batch,
        )

    def final_arrays(self) -> dict:
        """The weights to serve: the refit model, else the best validated one, else the last."""
        state = self.trainer.model.state_dict()
        if not self.refitted and self.best_state is not None:
            state = self.best_state
        return {name: value.detach().cpu().float().numpy() for name, value in state.items()}

    def print_final(self, metrics: dict) -> None:
        values = {}
        if metrics["mfrec"]:
            values.update({f"val_{name}": metrics["mfrec"][name] for name in METRIC_NAMES})
            values.update({f"pop_{name}": metrics["popularity"][name] for name in METRIC_NAMES})
            values["best_epoch"] = metrics["best_epoch"]
        elif self.history:
            values["train_loss"] = self.history[-1]["train_loss"]
        values["epochs_trained"] = metrics["epochs_trained"]
        values["refit"] = str(metrics["refit"]).lower()
        print(format_line(values, prefix="final: "), file=self.out, flush=True)
