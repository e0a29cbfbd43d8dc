"""Training from interactions to a model artifact: validation, early stopping, refit, progress.

``train_model`` is the one entry point that ``mfrec train`` (and the SageMaker job) calls:

1. Validation data: ``valid`` when given (re-indexed onto the training id maps), otherwise the
   last ``validation_fraction`` of each user's interactions (the seed protocol's hold-out).
2. ``auto`` values resolved by probes on the validation data; with ``model=auto`` both models
   are fitted and the better one kept (:mod:`mfrec.train.search`, :mod:`mfrec.train.auto`).
3. Fit: up to ``num_epochs`` epochs, validation NDCG@10 after every ``eval_every`` epochs,
   stopping after ``early_stopping_patience`` evaluations without improvement.
4. Refit (automatic hold-out and ``refit=True`` only): retrain from scratch on *all* the data
   for the best number of epochs, so the served model also knows each user's newest
   interactions. Its validation metrics cannot be measured (it has seen the hold-out); the
   reported ones are those of the best fit epoch. With ``refit=False``, or with a ``valid``
   set (the model then trained on all of ``data`` already), the best fit epoch's weights are
   kept instead.

Every epoch prints one metric line on ``out``, and a final line at the end
(:mod:`mfrec.train.metric_lines` defines their format and the SageMaker regexes).

In a distributed job (:mod:`mfrec.train.distributed`) every process calls ``train_model`` on
the same data: rank 0 alone prints the metric lines and reads and writes the checkpoints (the
state it resumes from is broadcast), and a stop on any rank stops every rank at the same step.
"""

from __future__ import annotations

import ctypes
import io
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mfrec.train import distributed
from mfrec.train.artifact import ModelArtifact
from mfrec.train.checkpoint import fingerprint, load_latest
from mfrec.train.config import TrainConfig, resolve_batch_size
from mfrec.train.device import resolve_device
from mfrec.train.errors import DataValidationError
from mfrec.train.interactions import Interactions
from mfrec.train.search import ModelSearch
from mfrec.train.split import align_to, temporal_split

logger = logging.getLogger(__name__)

# glibc's malloc serves blocks over 32 MB by mmap and unmaps them when freed, so each new
# block is faulted in page by page again; on the project's VMs that cost 3 to 6 ms per MB,
# more than the arithmetic: scoring 25,000 validation users (64 MB blocks of scores) took
# 7.7-9.3 CPU s with it and 2.9-4.3 s when freed blocks were kept for reuse.
MMAP_THRESHOLD_BYTES = 2**30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed blocks below :data:`MMAP_THRESHOLD_BYTES` for reuse
    (``mallopt``) instead of returning them to the OS; the process's peak memory is that of
    its live arrays as before, but it no longer falls after a peak. Returns whether it was
    set: False off glibc (macOS, musl), where nothing changes."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(
            libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
            and libc.mallopt(_M_TRIM_THRESHOLD, MMAP_THRESHOLD_BYTES)
        )
    except (OSError, AttributeError):
        return False


@dataclass
class TrainResult:
    """What :func:`train_model` produced.

    ``artifact`` is the model to save (when ``interrupted``, the best model so far: usable,
    not final; None when training stopped before any model was fitted); ``history`` has one
    dict per trained epoch; ``metrics`` holds the validation metrics of mfrec and of the
    popularity baseline (``{"mfrec": {...}, "popularity": {...}, "best_epoch": int | None,
    "model": "sgd" | "ials", ...}``; empty metric dicts without validation data).
    ``epochs_trained`` is the served model's number of epochs (the refit's when it was
    refitted, else the best validated epoch's); ``fit_epochs`` is how many epochs the kept
    model was fitted on the validation split before early stopping, the refit not counted.
    """

    artifact: ModelArtifact | None
    history: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    interrupted: bool = False


def train_model(
    data: Interactions,
    config: TrainConfig,
    valid: Interactions | None = None,
    *,
    extras: dict[str, np.ndarray] | None = None,
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
        A separate validation set (any id maps): re-indexed onto ``data``'s here, and only
        here; rows of users and items that ``data`` lacks are dropped and counted.
    extras : dict of str to ndarray, optional
        Extra arrays for the artifact (``item_trending``, ``item_attribute.<name>``, see
        :mod:`mfrec.train.item_features`).
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
    DataValidationError
        ``data`` holds no interactions.
    ConfigError
        An explicit ``num_negatives`` exceeds the number of items.
    TrainingDivergedError
        The loss or the weights became NaN or infinite, or the loss rose far above an
        untrained model's (see :mod:`mfrec.train.loop`).
    """
    if len(data) == 0:
        raise DataValidationError(
            "there are no interactions to train on; check the training channel's files and the "
            "import options that filter rows (min_event_value, event_types)"
        )
    config.check_catalogue(data.num_items)
    keep_freed_memory()  # training allocates and frees large blocks all the time
    device = resolve_device(config.device)
    config = resolve_batch_size(config, device.type)  # batch_size=auto: by the device
    logger.info("training config: %s", json.dumps(config.to_dict(), sort_keys=True))
    fit, holdout, source, dropped = _validation_data(data, valid, config)
    group = distributed.current()
    if not group.is_primary:
        out = io.StringIO()  # rank 0 prints the metric lines
    should_stop = distributed.collective_stop(should_stop, group)
    search = ModelSearch(data, fit, holdout, config, device, out, should_stop)
    search.fingerprint = fingerprint(data, valid, config, device)
    search.checkpoint_dir = checkpoint_dir
    state = load_latest(checkpoint_dir, search.fingerprint) if group.is_primary else None
    search.resume(group.broadcast(state))
    interrupted = search.train(refit=source == "holdout" and config.refit)
    run = search.run
    if run is None:  # stopped during the probes: nothing trained yet
        return TrainResult(None, [], {"validation": source}, interrupted=True)
    metrics = {
        "mfrec": run.best_metrics,
        "popularity": run.pop_metrics,
        "best_epoch": run.best_epoch,
        "epochs_trained": run.final_epochs,
        "fit_epochs": _fit_epochs(search.history, run.config.model),
        "validation": source,
        "refit": run.refitted,
        **search.metrics(),
        **({"validation_dropped": dropped} if dropped else {}),
    }
    if not interrupted:
        run.print_final(metrics)
    config = run.config
    artifact = ModelArtifact(
        **run.final_arrays(),
        user_ids=data.user_ids,
        item_ids=data.item_ids,
        item_popularity=data.item_counts(),
        seen_indptr=(csr := data.to_csr())[0],
        seen_indices=csr[1],
        config=config.to_dict(),
        metrics=metrics,
        extra=dict(extras or {}),
    )
    return TrainResult(artifact, search.history, metrics, interrupted)


def _fit_epochs(history: list[dict], model: str) -> int:
    """Epochs the kept model was fitted before early stopping (its refit not counted)."""
    fitted = [
        row["epoch"]
        for row in history
        if row.get("phase", "fit") == "fit" and row.get("model", model) == model
    ]
    return max(fitted, default=0)


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
            logger.info(
                "validation data: %d rows kept; dropped %d rows of users and %d rows of items "
                "that the training data does not have",
                dropped["kept_rows"],
                dropped["unknown_user_rows"],
                dropped["unknown_item_rows"],
            )
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
        if len(holdout) and len(fit):
            return fit, holdout, "holdout", None
        logger.warning(
            "the users have too few interactions for a hold-out (it would leave nothing to "
            "fit); training without validation"
        )
    return data, None, "none", None
