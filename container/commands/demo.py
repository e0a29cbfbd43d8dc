"""``mfrec demo``: the README's main job, as the commands a user would type (see
:data:`DESCRIPTION`, also its ``--help`` text). Each thing is said once: the data are imported
by ``validate`` and ``train`` only (the request file is built from the trained model), and the
transform runs one server worker."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import shutil
import sys
from pathlib import Path

DESCRIPTION = """\
Train on the embedded synthetic dataset (with its item titles and genres), batch-transform a
few users and one request for trending items of a genre through the real server, and print the
recommendations and the validation metrics next to the popularity baseline. Each step is an
ordinary mfrec command, printed before it runs, so the output doubles as a tutorial.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="train on the embedded dataset, batch-transform a few users, print the results",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--workdir",
        default="runs/demo",
        metavar="DIR",
        help="where the model, reports and transform output go (default: runs/demo)",
    )
    parser.add_argument("--data", metavar="PATH", help="interactions (default: embedded dataset)")
    parser.add_argument(
        "--items",
        metavar="PATH",
        help="item metadata with a genre column (default: the embedded dataset's, without --data)",
    )
    parser.add_argument(
        "--users", type=int, default=3, help="users in the batch transform (default: 3)"
    )
    parser.add_argument(
        "--top-n", type=int, default=5, help="recommendations per user (default: 5)"
    )
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        nargs="+",
        action="extend",
        default=[],
        help="hyperparameters passed to `mfrec train`",
    )
    parser.set_defaults(func=run)


def _step(title: str, argv: list[str]) -> None:
    """Print and run one ``mfrec`` command in-process; stop the demo if it fails."""
    from mfrec.cli import main
    from mfrec.train.errors import MfrecError

    print(f"\n== {title}\n$ mfrec {shlex.join(argv)}", flush=True)
    code = main(argv)
    if code != 0:
        raise MfrecError(f"`mfrec {shlex.join(argv)}` failed with exit code {code} (see above)")


def _request_file(
    model_dir: Path, path: Path, num_users: int, top_n: int
) -> tuple[list[str], str | None]:
    """The seed's request file (JSON lines with string values, no final newline), plus one
    trending request filtered on the genre of the most popular item; (users, that genre).

    Users and genre come from the trained model, so the data are not imported a third time.
    """
    import numpy as np

    from mfrec.train.artifact import ATTRIBUTE_PREFIX, load

    artifact = load(model_dir)
    counts = np.diff(artifact.seen_indptr)
    most_active = np.argsort(-counts, kind="stable")[:num_users]
    users = [str(artifact.user_ids[u]) for u in most_active]
    users.append("a-user-the-model-has-never-seen")
    lines = [json.dumps({"user_id": u, "top_n": str(top_n)}) for u in users]
    trending, genre = {"type": "trending", "top_n": str(top_n)}, None
    genres = artifact.extra.get(ATTRIBUTE_PREFIX + "genre")
    if genres is not None:
        genre = str(genres[int(np.argmax(artifact.item_popularity))]).split("|")[0] or None
    if genre:
        trending["include_attributes"] = {"genre": genre}
    lines.append(json.dumps(trending))
    path.write_text("\n".join(lines))
    return users, genre


def _training_summary(metrics_file: Path) -> str:
    """One line on what was trained: the model kept, its epochs, and the refit."""
    metrics = json.loads(metrics_file.read_text()).get("metrics") or {}
    model, best = metrics.get("model", "the model"), metrics.get("best_epoch")
    fitted = metrics.get("fit_epochs")
    if best is None:
        return f"{model}: {metrics.get('epochs_trained')} epochs, without validation"
    text = f"{model} kept: best VALID NDCG@10 at epoch {best} of {fitted} fitted"
    if metrics.get("refit"):
        text += f"; then refitted on all the data for {best} epochs (the model served)"
    return text


def _metrics_table(metrics_file: Path) -> str:
    metrics = json.loads(metrics_file.read_text())
    results = metrics.get("metrics") or {}
    model, popularity = results.get("mfrec") or {}, results.get("popularity") or {}
    if not model:
        return "(no validation metrics: validation_fraction was 0)"
    from mfrec.train.metric_lines import LINE_ORDER

    rows = [f"{'metric':<14}{'mfrec':>10}{'popularity':>12}"]
    for name in LINE_ORDER:
        if name in model:
            rows.append(
                f"{name:<14}{model[name]:>10.4f}{popularity.get(name, float('nan')):>12.4f}"
            )
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    from mfrec.train.ingest.datasets import default_dataset_path, default_items_path

    data = Path(args.data) if args.data else default_dataset_path()
    items = Path(args.items) if args.items else None if args.data else default_items_path()
    work = Path(args.workdir)
    if work.exists():
        shutil.rmtree(work)
    model_dir, output_dir, transform_dir = work / "model", work / "output", work / "transform"
    requests = work / "requests.jsonl"
    work.mkdir(parents=True)

    _step("1. Validate the interactions", ["validate", str(data)])
    # Step 1 printed what the import found, warnings included; training reads the same files,
    # so its import lines would only say it again (errors still show).
    import_logger = logging.getLogger("mfrec.train.ingest")
    import_logger.setLevel(logging.ERROR)
    train = ["train", "--data", str(data), "--model-dir", str(model_dir)]
    train += ["--output-dir", str(output_dir)]
    if items is not None:
        train += ["--items", str(items)]
    if args.set:
        train += ["--set", *args.set]
    try:
        _step("2. Train (per-epoch metric lines on stdout; the import is as in step 1)", train)
    finally:
        import_logger.setLevel(logging.NOTSET)
    print(_training_summary(output_dir / "metrics.json"))

    users, genre = _request_file(model_dir, requests, args.users, args.top_n)
    print(f"\n== 3. Batch transform request file {requests}:\n{requests.read_text()}")
    _step(
        "   sent through a local `mfrec serve` (gunicorn), SplitType=Line, MultiRecord",
        [
            "transform",
            str(requests),
            "--output",
            str(transform_dir),
            "--model-dir",
            str(model_dir),
            "--strategy",
            "MultiRecord",
            "--workers",
            "1",
        ],
    )
    out_file = transform_dir / (requests.name + ".out")
    print(f"\n== 4. Recommendations ({out_file}: user_id,item_id,score)")
    print(out_file.read_text(), end="")
    print(
        f"({users[-1]} is not in the training data: it gets the most popular items, and its "
        f"scores are their training interaction counts, not model scores)"
    )
    print(
        f"(the last request asks for trending {genre + ' ' if genre else ''}items: its scores "
        f"are interaction counts weighted by recency; its first column is empty)"
    )

    print(f"\n== 5. Validation metrics (temporal hold-out), from {output_dir / 'metrics.json'}")
    print(_metrics_table(output_dir / "metrics.json"))
    print(f"\nmodel: {model_dir}   reports and plot: {output_dir}", flush=True)
    sys.stdout.flush()
    return 0
