"""``mfrec train``: the SageMaker training job, or the same job on local paths.

``mfrec train`` with no data argument is what ``docker run IMAGE train`` runs: it reads
SageMaker's layout under ``--base-dir``, ``$SAGEMAKER_BASE_DIR`` or ``/opt/ml``. With ``--data``
it trains on local files; ``--set key=value`` passes hyperparameters as strings, exactly as
SageMaker does, so both modes parse them identically.
"""

from __future__ import annotations

import argparse

from mfrec.commands.data import IMPORT_FLAGS, add_import_arguments
from mfrec.train.errors import ConfigError

EPILOG = """\
exit codes: 0 trained (or stopped by SIGTERM after writing a checkpoint), 1 bad data or
hyperparameters (the reason is in OUTPUT/failure), 2 internal error.

examples:
  mfrec train                                       # SageMaker: reads /opt/ml
  mfrec train --data interactions.csv --model-dir model --set num_epochs=5
  mfrec train --data interactions.csv --items items.csv --model-dir model
  mfrec train --data interactions.csv --model-dir model --processes 2   # 2 ranks (gloo/NCCL)
  mfrec train --print-metric-definitions           # MetricDefinitions for the estimator
"""

LOCAL_ONLY = ("validation", "items", "model_dir", "output_dir", "checkpoint_dir", "set")
LOCAL_ONLY += tuple(name for name, _ in IMPORT_FLAGS.values())


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model (SageMaker training job, or local files with --data)",
        description=(
            "Without --data: the SageMaker training job (what `docker run IMAGE train` runs), "
            "reading the layout under --base-dir, $SAGEMAKER_BASE_DIR or /opt/ml. With --data: "
            "the same job on local files, hyperparameters given as --set strings."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sagemaker = parser.add_argument_group("SageMaker mode (no --data)")
    sagemaker.add_argument(
        "--base-dir",
        metavar="DIR",
        help="SageMaker base folder (default: $SAGEMAKER_BASE_DIR, else /opt/ml)",
    )
    local = parser.add_argument_group("local mode")
    local.add_argument(
        "--data", metavar="PATH", help="interaction file or folder (read recursively)"
    )
    local.add_argument("--validation", metavar="PATH", help="optional validation file or folder")
    local.add_argument(
        "--items",
        metavar="PATH",
        help="optional item metadata file or folder: item_id and attribute columns such as "
        "title, genre (SageMaker: channel 'items')",
    )
    local.add_argument("--model-dir", metavar="DIR", help="where the model is written")
    local.add_argument(
        "--output-dir",
        metavar="DIR",
        help="data report, metrics.json, training-curve plot and the failure file",
    )
    local.add_argument(
        "--checkpoint-dir", metavar="DIR", help="write checkpoints here and resume from them"
    )
    local.add_argument(
        "--set",
        metavar="KEY=VALUE",
        nargs="+",
        action="extend",
        default=[],
        help="a hyperparameter, as a string like SageMaker's (repeatable)",
    )
    parser.add_argument(
        "--processes",
        metavar="N",
        type=int,
        help="training processes on this host (torch.distributed; both modes); default: the "
        "'processes' hyperparameter, else one per visible GPU, else 1",
    )
    add_import_arguments(parser)  # local mode: the same options as `mfrec validate`
    parser.add_argument(
        "--print-metric-definitions",
        action="store_true",
        help="print SageMaker MetricDefinitions (JSON) for the per-epoch lines and exit",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.print_metric_definitions:
        import json

        from mfrec.train.metric_lines import METRIC_DEFINITIONS

        print(json.dumps(METRIC_DEFINITIONS, indent=2))
        return 0

    from mfrec import training_job

    if args.processes is not None and args.processes < 1:
        raise ConfigError(f"--processes {args.processes}: give an integer >= 1")
    if args.data is None:
        given = [name for name in LOCAL_ONLY if getattr(args, name)]
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise ConfigError(f"{flags} need --data PATH (local mode); add --data or drop them")
        return training_job.run_sagemaker_job(args.base_dir, processes=args.processes)
    if args.base_dir:
        raise ConfigError("--base-dir is for SageMaker mode; drop it when training with --data")
    if args.model_dir is None:
        raise ConfigError("--model-dir DIR is required with --data: say where to write the model")
    return training_job.run_local_job(
        args.data,
        args.model_dir,
        validation=args.validation,
        items=args.items,
        output_dir=args.output_dir,
        checkpoint_dir=args.checkpoint_dir,
        hyperparameters=local_hyperparameters(args),
        processes=args.processes,
    )


def local_hyperparameters(args: argparse.Namespace) -> dict[str, str]:
    """The import-option flags and ``--set`` pairs as one string mapping, as SageMaker's."""
    hyperparameters = parse_settings(args.set)
    for flag, (name, _) in IMPORT_FLAGS.items():
        value = getattr(args, name)
        if value is None:
            continue
        if name in hyperparameters:
            raise ConfigError(f"{name} is given twice ({flag} and --set {name}=); keep one")
        hyperparameters[name] = value
    return hyperparameters


def parse_settings(settings: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` → ``{"k": "v"}``; values stay strings, the last of a repeated key wins."""
    hyperparameters = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {setting!r} is not KEY=VALUE; write e.g. --set num_epochs=5")
        hyperparameters[key.strip()] = value
    return hyperparameters
