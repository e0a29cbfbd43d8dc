"""``mfrec demo``: the README's main job, as the commands a user would type.

It validates the embedded synthetic dataset, trains on it (with its item titles and genres),
runs a local batch transform of a few users, and one request for trending items of a genre,
through the real server, and prints the recommendations and the validation metrics next to the
popularity baseline. Each step is an ordinary ``mfrec`` command, printed before it runs, so
the output doubles as a tutorial.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="train on the embedded dataset, batch-transform a few users, print the results",
        description=__doc__,
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
    parser.add_argument("--users", type=int, default=3, help="users in the batch transform")
    parser.add_argument("--top-n", type=int, default=5, help="recommendations per user")
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
    data: Path, items: Path | None, path: Path, num_users: int, top_n: int
) -> tuple[list[str], str | None]:
    """The seed's request file (JSON lines with string values, no final newline), plus one
    trending request filtered on the genre of the most popular item; (users, that genre)."""
    import pandas as pd

    from mfrec.train.ingest import ImportOptions, load_interactions, read_item_attributes

    interactions, _ = load_interactions(data, ImportOptions(), check_minimums=False)
    counts = pd.Series(interactions.user_counts(), index=interactions.user_ids)
    users = [str(u) for u in counts.sort_values(ascending=False, kind="stable").index[:num_users]]
    users.append("a-user-the-model-has-never-seen")
    lines = [json.dumps({"user_id": u, "top_n": str(top_n)}) for u in users]
    trending, genre = {"type": "trending", "top_n": str(top_n)}, None
    genres = read_item_attributes(items, interactions.item_ids).get("genre") if items else None
    if genres is not None:
        genre = str(genres[interactions.item_counts().argmax()]).split("|")[0] or None
    if genre:
        trending["include_attributes"] = {"genre": genre}
    lines.append(json.dumps(trending))
    path.write_text("\n".join(lines))
    return users, genre


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
    train = ["train", "--data", str(data), "--model-dir", str(model_dir)]
    train += ["--output-dir", str(output_dir)]
    if items is not None:
        train += ["--items", str(items)]
    if args.set:
        train += ["--set", *args.set]
    _step("2. Train (per-epoch metric lines on stdout)", train)

    users, genre = _request_file(data, items, requests, args.users, args.top_n)
    print(f"\n== 3. Batch transform request file {requests}:\n{requests.read_text()}")
    _step(
        "   sent through a local `mfrec serve` (gunicorn), SplitType=Line, SingleRecord",
        [
            "transform",
            str(requests),
            "--output",
            str(transform_dir),
            "--model-dir",
            str(model_dir),
            "--strategy",
            "SingleRecord",
        ],
    )
    out_file = transform_dir / (requests.name + ".out")
    print(f"\n== 4. Recommendations ({out_file}: user_id,item_id,score)")
    print(out_file.read_text(), end="")
    print(f"({users[-1]} is not in the training data: it gets the popularity list)")
    print(
        f"(the last request asks for trending {genre + ' ' if genre else ''}items: popularity "
        f"weighted by recency; the first column is empty)"
    )

    print(f"\n== 5. Validation metrics (temporal hold-out), from {output_dir / 'metrics.json'}")
    print(_metrics_table(output_dir / "metrics.json"))
    print(f"\nmodel: {model_dir}   reports and plot: {output_dir}", flush=True)
    sys.stdout.flush()
    return 0
