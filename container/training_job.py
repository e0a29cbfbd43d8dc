"""The SageMaker training job: what ``docker run IMAGE train`` (and ``mfrec train``) does.

One code path serves both modes. :func:`run_sagemaker_job` reads SageMaker's layout under a base
folder (``/opt/ml``, or ``$SAGEMAKER_BASE_DIR``, computed when called); :func:`run_local_job`
takes plain paths and ``--set`` strings. Both build a :class:`JobSpec` and call the same
:func:`_train`, so hyperparameters are parsed identically.

Outcome, as SageMaker sees it (see docs/training.md):

* exit 0: model written to the model folder (or, after SIGTERM, the checkpoint written and the
  model as trained so far). A stopped or Spot-interrupted job exits 0 on purpose: SageMaker marks
  it Stopped (or restarts it) whatever the exit code, and a local wrapper should not call a
  requested stop a failure.
* exit 1: the user's data or hyperparameters are wrong (:class:`~mfrec.train.errors.MfrecError`);
  ``output/failure`` says what is wrong and how to fix it.
* exit 2: a bug in mfrec; the traceback goes to stderr (CloudWatch), a short line to the failure
  file.

Distributed (several hosts, or ``processes`` > 1; :mod:`mfrec.launch`): every process runs
these steps on the same data (a ``ShardedByS3Key`` channel's shards are gathered first); rank 0
alone writes the outputs, checkpoints and the model, and the other hosts leave their model
folders empty. A data error on any rank is shared, so every rank fails with it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mfrec import launch
from mfrec.job_config import (
    ITEMS,
    TRAINING,
    VALIDATION,
    channel_data,
    read_job_config,
)
from mfrec.job_process import StopFlag, run_guarded
from mfrec.paths import SageMakerPaths
from mfrec.train import distributed
from mfrec.train.artifact import save
from mfrec.train.config import TrainConfig, check_hyperparameter_names
from mfrec.train.errors import DataValidationError, MfrecError, disk_full, write_through_partial
from mfrec.train.ingest import ImportOptions, load_interactions
from mfrec.train.ingest.report import ImportStats, build_report
from mfrec.train.interactions import Interactions
from mfrec.train.item_features import (
    DEFAULT_HALF_LIFE_DAYS,
    HALF_LIFE_NAME,
    item_extras,
    parse_half_life,
)
from mfrec.train.pipeline import TrainResult, train_model
from mfrec.train.plot import plot_history

logger = logging.getLogger(__name__)

DATA_REPORT = "data_report.json"
VALIDATION_REPORT = "validation_report.json"
METRICS = "metrics.json"
TRAINING_CURVE = "training_curve.png"
STAGING_GLOB = ".mfrec-staging-*"  # mfrec.train.artifact.save's staging folders
PARTIAL_GLOB = ".*.partial*"  # _write_output's partial files
# Hyperparameters of the job itself, beside TrainConfig's and ImportOptions' (docs/training.md).
JOB_HYPERPARAMETERS = ("trending_half_life_days", launch.PROCESSES)


@dataclass(frozen=True)
class JobSpec:
    """Where one training run reads and writes, whichever mode it was started in."""

    training: Path
    model_dir: Path
    hyperparameters: Mapping[str, str] = field(default_factory=dict)
    validation: Path | None = None
    items: Path | None = None
    output_data_dir: Path | None = None
    checkpoint_dir: Path | None = None
    sharded: tuple[str, ...] = ()  # channels of which this host holds a shard (ShardedByS3Key)


def run_sagemaker_job(
    base_dir: str | Path | None = None, *, out=None, processes: int | None = None
) -> int:
    """Run the training job described by SageMaker's files under ``base_dir``.

    Parameters
    ----------
    base_dir : path, optional
        Defaults to ``$SAGEMAKER_BASE_DIR``, else ``/opt/ml``.
    out : text stream, optional
        Where the per-epoch metric lines go (default ``sys.stdout``).
    processes : int, optional
        Processes on each host (``mfrec train --processes``); default: the ``processes``
        hyperparameter.

    Returns
    -------
    int
        The process exit code: 0 done (or stopped by SIGTERM), 1 user error, 2 internal error.
    """
    paths = SageMakerPaths.from_env(base_dir)
    failure = paths.failure if paths.base.is_dir() else None
    launched = launch.launched_rank()
    if launched is not None and launched.local_rank != 0:
        failure = None  # the host's first process writes it
    job = lambda stop: _sagemaker_job(paths, stop, out, processes)  # noqa: E731
    return run_guarded(job, failure)


def run_local_job(
    data: str | Path,
    model_dir: str | Path,
    *,
    validation: str | Path | None = None,
    items: str | Path | None = None,
    output_dir: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    hyperparameters: Mapping[str, str] | None = None,
    out=None,
    processes: int | None = None,
) -> int:
    """Run the same job on local paths; ``hyperparameters`` are strings, as SageMaker's are.

    ``items`` is the item metadata (the ``items`` channel of a SageMaker job), optional.
    ``processes`` (``--processes``) overrides the ``processes`` hyperparameter.

    The failure file is written to ``output_dir/failure`` when ``output_dir`` is given. Returns
    the exit code, as :func:`run_sagemaker_job`.
    """
    spec = JobSpec(
        training=Path(data),
        model_dir=Path(model_dir),
        hyperparameters=dict(hyperparameters or {}),
        validation=None if validation is None else Path(validation),
        items=None if items is None else Path(items),
        output_data_dir=None if output_dir is None else Path(output_dir),
        checkpoint_dir=None if checkpoint_dir is None else Path(checkpoint_dir),
    )
    failure = None if output_dir is None else Path(output_dir) / "failure"
    launched = launch.launched_rank()
    if launched is not None and launched.local_rank != 0:
        failure = None

    def job(stop: StopFlag) -> int:
        _parse_hyperparameters(spec.hyperparameters)  # refused before any process starts
        layout = launch.plan(spec.hyperparameters, processes=processes)
        arguments = _local_arguments(spec, output_dir)
        return _distributed(layout, arguments, stop, failure, lambda: _train(spec, stop, out))

    return run_guarded(job, failure)


def _local_arguments(spec: JobSpec, output_dir) -> list[str]:
    """``mfrec train`` arguments that run ``spec`` again (in a launched process)."""
    arguments = ["train", "--data", str(spec.training), "--model-dir", str(spec.model_dir)]
    for flag, value in (
        ("--validation", spec.validation),
        ("--items", spec.items),
        ("--output-dir", output_dir),
        ("--checkpoint-dir", spec.checkpoint_dir),
    ):
        if value is not None:
            arguments += [flag, str(value)]
    if spec.hyperparameters:
        arguments += ["--set", *(f"{k}={v}" for k, v in spec.hyperparameters.items())]
    return arguments


def _distributed(layout, arguments, stop: StopFlag, failure, train: Callable[[], int]) -> int:
    """Train in this process, alone or as one rank, or launch this host's processes."""
    rank = launch.launched_rank()
    if rank is None and not layout.joins_group:
        return train()  # one process: no process group at all
    if rank is None and layout.processes > 1:
        return launch.run_processes(arguments, layout, stop, failure)
    rank = rank or launch.own_rank(layout)
    with distributed.process_group(
        rank.rank, rank.world_size, rank.local_rank, rank.address, rank.port, rank.backend
    ):
        return train()


def _sagemaker_job(paths: SageMakerPaths, stop: StopFlag, out, processes: int | None) -> int:
    job = read_job_config(paths)
    _parse_hyperparameters(job.hyperparameters)  # a typo fails every host alike
    launch.set_network_interface(job.network_interface)
    layout = launch.plan(job.hyperparameters, job.hosts, job.current_host, processes)
    arguments = ["train", "--base-dir", str(paths.base)]
    return _distributed(
        layout, arguments, stop, paths.failure, lambda: _sagemaker_train(paths, job, stop, out)
    )


def _sagemaker_train(paths: SageMakerPaths, job, stop: StopFlag, out) -> int:
    with tempfile.TemporaryDirectory(prefix="mfrec-pipe-") as scratch:
        training = channel_data(paths, job, TRAINING, Path(scratch), required=True)
        validation = channel_data(paths, job, VALIDATION, Path(scratch))
        items = channel_data(paths, job, ITEMS, Path(scratch))
        spec = JobSpec(
            training=training,
            validation=validation,
            items=items,
            model_dir=paths.model,
            hyperparameters=job.hyperparameters,
            output_data_dir=paths.output_data,
            checkpoint_dir=paths.checkpoints,
            sharded=tuple(
                name
                for name in (TRAINING, VALIDATION)
                if job.channels.get(name, {}).get("S3DistributionType") == "ShardedByS3Key"
            ),
        )
        return _train(spec, stop, out)


@dataclass(frozen=True)
class JobSettings:
    """The job's hyperparameters, parsed: the import options, the training config and the
    trending half-life (days)."""

    options: ImportOptions
    config: TrainConfig
    half_life_days: float


@dataclass(frozen=True)
class JobInputs:
    """What the job read: the training data, the raw validation data (re-indexed by the
    pipeline) and the item extras for the artifact."""

    data: Interactions
    valid: Interactions | None
    extras: dict[str, np.ndarray]


def _parse_hyperparameters(hyperparameters: Mapping[str, str]) -> JobSettings:
    """String hyperparameters to :class:`JobSettings`; unknown keys are refused."""
    other_names = set(ImportOptions.hyperparameter_names()) | set(JOB_HYPERPARAMETERS)
    check_hyperparameter_names(
        hyperparameters, other_names | set(TrainConfig.hyperparameter_names())
    )
    half_life = DEFAULT_HALF_LIFE_DAYS
    if HALF_LIFE_NAME in hyperparameters:
        half_life = parse_half_life(hyperparameters[HALF_LIFE_NAME])
    return JobSettings(
        options=ImportOptions.from_hyperparameters(hyperparameters),
        config=TrainConfig.from_hyperparameters(hyperparameters, ignore=other_names),
        half_life_days=half_life,
    )


def _train(spec: JobSpec, stop: StopFlag, out) -> int:
    """The job's steps: settings, inputs, training, outputs, the model."""
    settings = _parse_hyperparameters(spec.hyperparameters)
    group = distributed.current()
    if group.distributed:
        _log_rank(group)
    if not group.is_primary:  # rank 0 writes the outputs, checkpoints and the model
        spec = dataclasses.replace(spec, output_data_dir=None, checkpoint_dir=None)
    _log_start(spec, settings)
    if group.is_primary:
        _remove_leftovers(spec.model_dir, STAGING_GLOB)
    if spec.output_data_dir is not None:
        _remove_leftovers(spec.output_data_dir, PARTIAL_GLOB)
    inputs = _read_inputs_together(spec, settings, group)
    if distributed.collective_stop(stop, group)():  # SIGTERM during the import
        logger.warning(
            "%s received before training started; exiting without a model", stop.signal_name
        )
        return 0
    if spec.checkpoint_dir is not None:
        spec.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        logger.info("checkpoints: %s (the newest one is resumed)", spec.checkpoint_dir)
    result = train_model(
        inputs.data,
        settings.config,
        inputs.valid,
        extras=inputs.extras,
        checkpoint_dir=spec.checkpoint_dir,
        should_stop=stop,
        out=out if out is not None else sys.stdout,
    )
    _write_results(spec, result)
    if not group.is_primary:
        logger.info("rank %d done; rank 0 writes the model", group.rank)
        return 0
    if result.interrupted and not _interrupted_model_worth_writing(spec, result, stop):
        return 0
    try:
        save(result.artifact, spec.model_dir)
    except OSError as exc:
        if (full := disk_full(exc, spec.model_dir)) is None:
            raise
        raise full from exc
    logger.info(
        "model written to %s%s",
        spec.model_dir,
        " (as trained so far: training was interrupted)" if result.interrupted else "",
    )
    return 0


def _remove_leftovers(folder: Path, pattern: str) -> None:
    """Delete what a job killed while writing left behind: ``.mfrec-staging-*`` folders in the
    model folder, ``.*.partial*`` files in the output data folder (SageMaker would pack them
    into model.tar.gz and output.tar.gz)."""
    if not folder.is_dir():
        return
    for leftover in folder.glob(pattern):
        logger.warning("removing %s, left by a write that was cut short", leftover)
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _log_start(spec: JobSpec, settings: JobSettings) -> None:
    logger.info("import options: %s", _to_json(settings.options))
    logger.info("trending_half_life_days: %s", settings.half_life_days)
    logger.info(
        "training data: %s; item metadata: %s; model folder: %s",
        spec.training,
        spec.items or "none",
        spec.model_dir,
    )


def _log_rank(group: distributed.Group) -> None:
    logger.info(
        "distributed training: world size %d; this process is rank %d (local rank %d); each "
        "rank computes 1/%d of every SGD batch and solves 1/%d of iALS's users and items",
        group.world_size, group.rank, group.local_rank, group.world_size, group.world_size,
    )  # fmt: skip


def _read_inputs_together(spec: JobSpec, settings: JobSettings, group) -> JobInputs:
    """:func:`_read_inputs` on every rank; a data error on any rank fails every rank with it
    (no rank waits for one that has given up), and sharded channels are gathered."""
    if not group.distributed:
        return _read_inputs(spec, settings)
    error = None
    try:
        inputs = _read_inputs(spec, settings)
    except MfrecError as exc:
        error = exc
    reasons = group.all_gather_object(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    for rank, reason in enumerate(reasons):
        if reason is not None:
            raise distributed.PeerFailedError(f"rank {rank} could not read its data: {reason}")
    shard = group.local_rank == 0  # the host's other processes read the same shard
    if TRAINING not in spec.sharded:
        return inputs
    data = distributed.gather_interactions(inputs.data, group, contributes=shard)
    # Amazon Personalize's minimum holds for the whole channel, not for one host's shard.
    refusal = build_report(data, ImportStats(source="all shards")).refusal()
    if refusal:
        raise DataValidationError(f"{refusal} (all {group.world_size} ranks' shards together)")
    valid = inputs.valid
    if VALIDATION in spec.sharded and valid is not None:
        valid = distributed.gather_interactions(valid, group, contributes=shard)
    return JobInputs(data, valid, item_extras(data, spec.items, settings.half_life_days))


def _read_inputs(spec: JobSpec, settings: JobSettings) -> JobInputs:
    """Import the channels (writing their data reports) and read the item metadata. A
    sharded training channel's minimums are checked once its shards are gathered."""
    whole = TRAINING not in spec.sharded
    try:
        data, report = load_interactions(spec.training, settings.options, check_minimums=whole)
    except DataValidationError as exc:  # too little data: the report still says what was read
        if exc.report is not None:
            _write_output(spec, DATA_REPORT, exc.report.write_json)
        raise
    _write_output(spec, DATA_REPORT, report.write_json)
    valid = None
    if spec.validation is not None:
        valid, report = load_interactions(spec.validation, settings.options, check_minimums=False)
        _write_output(spec, VALIDATION_REPORT, report.write_json)
    # Read before training, so that a malformed items file fails the job at once.
    extras = item_extras(data, spec.items, settings.half_life_days)
    return JobInputs(data, valid, extras)


def _interrupted_model_worth_writing(spec: JobSpec, result: TrainResult, stop: StopFlag) -> bool:
    """Log how an interrupted job resumes; True when an epoch finished (a usable model)."""
    resume = (
        f"the checkpoint in {spec.checkpoint_dir} lets a restarted job resume"
        if spec.checkpoint_dir is not None
        else "without a checkpoint folder a new run starts over"
    )
    logger.warning("training stopped by %s before the end; %s", stop.signal_name, resume)
    if not result.history:
        logger.warning("no epoch was completed, so no model is written")
        return False
    return True


def _write_results(spec: JobSpec, result) -> None:
    """metrics.json and the training-curve plot, into the output data folder."""
    if spec.output_data_dir is None:
        return
    summary = {
        "metrics": result.metrics,
        "history": result.history,
        "interrupted": result.interrupted,
    }
    _write_output(
        spec,
        METRICS,
        lambda path: path.write_text(json.dumps(summary, indent=2, default=float) + "\n"),
    )
    if result.history:
        best, model = result.metrics.get("best_epoch"), result.metrics.get("model")
        _write_output(
            spec, TRAINING_CURVE, lambda path: plot_history(result.history, path, best, model)
        )


def _write_output(spec: JobSpec, name: str, write: Callable[[Path], object]) -> None:
    """Write one output file through a hidden ``.partial`` file, removed if the write fails;
    a full disk becomes :class:`DiskFullError` naming the file."""
    if spec.output_data_dir is None:
        return
    target = spec.output_data_dir / name
    partial = target.with_name(f".{name}.partial{target.suffix}")  # keeps the suffix for savefig
    try:
        spec.output_data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if (full := disk_full(exc, target)) is None:
            raise
        raise full from exc
    write_through_partial(target, partial, write)


def _to_json(obj) -> str:
    import dataclasses

    if hasattr(obj, "to_dict"):
        obj = obj.to_dict()
    elif dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    return json.dumps(obj, sort_keys=True, default=str)
