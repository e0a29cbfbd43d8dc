"""``mfrec validate``, ``mfrec import`` and ``mfrec synth``: the data side of the CLI.

The import options are the hyperparameters of :class:`mfrec.train.ingest.ImportOptions`, one
``--flag`` each (``--min-event-value 3.5``); ``add_import_arguments`` and ``import_options``
let other commands (``mfrec train``) offer the same flags.
"""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)

# flag -> (hyperparameter name, help)
IMPORT_FLAGS = {
    "--user-column": ("user_column", "user id column (default: detected from the header)"),
    "--item-column": ("item_column", "item id column (default: detected)"),
    "--timestamp-column": ("timestamp_column", "timestamp column (default: detected)"),
    "--value-column": ("value_column", "event value / rating column (default: detected)"),
    "--event-type-column": ("event_type_column", "event type column (default: detected)"),
    "--min-event-value": ("min_event_value", "keep events whose value is >= this"),
    "--event-types": ("event_types", "keep only these event types, comma-separated"),
    "--event-type-weights": ("event_type_weights", "weights per event type, e.g. click:1,buy:5"),
    "--duplicates": ("duplicates", "repeated (user, item) rows: keep (default), first or sum"),
    "--on-bad-rows": ("on_bad_rows", "unparseable rows / bad values: error (default) or skip"),
    "--header": ("header", "header row: auto (default), yes or no"),
}


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``ImportOptions`` flags (all optional, parsed later by ``import_options``).

    Options with fixed values show them (``--duplicates {keep,first,sum}``); the values are
    checked by ``ImportOptions``, which also takes ``true``/``false`` for ``--header``.
    """
    from mfrec.train.ingest.options import CHOICES

    group = parser.add_argument_group("import options (hyperparameters of the same name)")
    for flag, (name, help_text) in IMPORT_FLAGS.items():
        metavar = "{" + ",".join(CHOICES[name]) + "}" if name in CHOICES else "VALUE"
        group.add_argument(flag, dest=name, metavar=metavar, help=help_text)


def import_options(args: argparse.Namespace):
    """The ``ImportOptions`` given on the command line."""
    from mfrec.train.ingest import ImportOptions

    given = {name: getattr(args, name) for name, _ in IMPORT_FLAGS.values()}
    return ImportOptions.from_hyperparameters({k: v for k, v in given.items() if v is not None})


def register(subparsers) -> None:
    validate = subparsers.add_parser(
        "validate",
        help="check interaction files and print the data report",
        description="Read interaction files (a file or a folder), check them and print the data "
        "report. Exit code 1 with the reason when the data are refused.",
    )
    validate.add_argument("path", help="a file or a folder (read recursively)")
    validate.add_argument("--report-json", metavar="FILE", help="also write the report as JSON")
    validate.add_argument(
        "--no-minimums",
        action="store_true",
        help="only warn below Amazon Personalize's hard minimum instead of refusing",
    )
    add_import_arguments(validate)
    validate.set_defaults(func=run_validate)

    imp = subparsers.add_parser(
        "import",
        help="import interaction files into one normalised Parquet file",
        description="Read, check and normalise interaction files into a Parquet file with "
        "columns user_id, item_id (strings), timestamp (int64 Unix seconds), event_value "
        "(float, after thresholds and type weights) and event_type; absent ones are null.",
    )
    imp.add_argument("path", help="a file or a folder (read recursively)")
    imp.add_argument("--out", required=True, metavar="FILE.parquet", help="output Parquet file")
    imp.add_argument("--report-json", metavar="FILE", help="also write the report as JSON")
    imp.add_argument("--no-minimums", action="store_true", help="see `mfrec validate`")
    add_import_arguments(imp)
    imp.set_defaults(func=run_import)

    synth = subparsers.add_parser(
        "synth",
        help="write a synthetic interaction dataset",
        description="Write synthetic interactions (user_id,item_id,timestamp) with power-law "
        "popularity, heavy-tailed activity and planted tastes; the same seed gives the same "
        "bytes. Streams in blocks, so 100M rows are fine.",
    )
    synth.add_argument("--out", required=True, metavar="PATH", help=".csv, .csv.gz or .parquet")
    synth.add_argument(
        "--num-interactions", type=int, required=True, metavar="N", help="rows to write"
    )
    synth.add_argument(
        "--num-users", type=int, metavar="N", help="users (default: num_interactions / 40)"
    )
    synth.add_argument(
        "--num-items", type=int, metavar="N", help="items (default: num_interactions / 100)"
    )
    synth.add_argument(
        "--num-topics", type=int, metavar="N", help="planted tastes (default: ~sqrt(items)/2)"
    )
    synth.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed; the same seed gives the same bytes (default: 0)",
    )
    synth.add_argument(
        "--format", choices=("csv", "parquet"), help="output format (default: from --out suffix)"
    )
    synth.add_argument("--items-out", metavar="PATH", help="also write item_id,title,genre CSV")
    synth.set_defaults(func=run_synth)


def _load(args):
    from mfrec.train.errors import DataValidationError
    from mfrec.train.ingest import load_interactions

    try:
        return load_interactions(
            args.path,
            import_options(args),
            check_minimums=not args.no_minimums,
            log_warnings=False,  # the printed report lists them
        )
    except DataValidationError as exc:
        report = getattr(exc, "report", None)
        if report is not None and args.report_json:
            report.write_json(args.report_json)
            logger.info("report written to %s", args.report_json)
        raise


def run_validate(args) -> int:
    _, report = _load(args)
    print(report.summary())
    if args.report_json:
        report.write_json(args.report_json)
        print(f"report written to {args.report_json}")
    return 0


def run_import(args) -> int:
    from pathlib import Path

    import pyarrow.parquet as pq

    from mfrec.train.ingest import interactions_to_table

    data, report = _load(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(interactions_to_table(data), out)
    print(report.summary())
    print(f"wrote {len(data):,} interactions to {out}")
    if args.report_json:
        report.write_json(args.report_json)
        print(f"report written to {args.report_json}")
    return 0


def run_synth(args) -> int:
    from mfrec.train.ingest.synth import item_metadata, write_synthetic

    spec = write_synthetic(
        args.out,
        args.num_interactions,
        num_users=args.num_users,
        num_items=args.num_items,
        seed=args.seed,
        fmt=args.format,
        num_topics=args.num_topics,
    )
    print(
        f"wrote {spec.num_interactions:,} interactions of {spec.num_users:,} users and "
        f"{spec.num_items:,} items ({spec.num_topics} topics, seed {spec.seed}) to {args.out}"
    )
    if args.items_out:
        item_metadata(spec.num_items, spec.seed, spec.num_topics).to_csv(
            args.items_out, index=False
        )
        print(f"wrote item metadata to {args.items_out}")
    return 0
