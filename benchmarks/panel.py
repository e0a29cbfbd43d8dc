"""Benchmark Q's robustness panel (``../shared/BENCHMARKS.md``): mfrec's defaults on five regimes.

Members, each through protocol Q (TRAIN/TEST the per-user temporal hold-out of the last 10 %,
FIT/VALID the same split of TRAIN):

* ``ml-100k``: MovieLens 100K, every rating an interaction;
* ``ml-100k-pos``: its positives only (rating >= 4);
* ``ml-100k-sparse``: each user's earliest 30 % of interactions, ``ceil(0.3 n)`` of ``n``
  (at least 1), in (timestamp, file order) as the split orders them;
* ``synthetic``: mfrec's packaged default dataset;
* ``synthetic-longtail``: mfrec's generator at :data:`LONGTAIL` (more items than users, most
  items seen a handful of times, timestamps at day resolution).

The peers (popularity, EASE, implicit's ALS) try ``--budget`` configurations on FIT, scored on
VALID; the best is retrained on TRAIN and scored once on TEST (``quality.run_peer``). mfrec runs
with no hyperparameters at all (``quality.run_mfrec_defaults``: ``TrainConfig()`` on TRAIN, as
a job without hyperparameters), and, with ``--mfrec-set``, once more as a labelled variant.
The panel table gives each member's ratio mfrec / best tuned peer on TEST NDCG@10 and the
minimum over the panel against the target (>= 1.10x).

A peer's tuned TEST result is cached in ``runs/bench-cache/panel/`` per (member, peer, budget,
data digest, peer code digest), so a rerun that only changes mfrec repeats mfrec alone; the
tables say which values came from the cache (``--no-cache`` recomputes them).

    python -m benchmarks.panel --threads 1
    python -m benchmarks.panel --members ml-100k,synthetic-longtail --mfrec-set embedding_dim=64
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks import common, peers, quality
from mfrec.train.interactions import Interactions
from mfrec.train.metric_lines import METRIC_NAMES

logger = logging.getLogger(__name__)

MEMBERS = ("ml-100k", "ml-100k-pos", "ml-100k-sparse", "synthetic", "synthetic-longtail")
HEADLINE = quality.HEADLINE
TARGET = 1.10  # mfrec's defaults, × the best tuned peer's TEST NDCG@10, on every member
POSITIVE_RATING = 4
SPARSE_SHARE = 0.3
LONGTAIL = {
    "num_interactions": 80_000,
    "num_users": 3_000,
    "num_items": 12_000,
    "seed": 0,
    "timestamp_resolution": 86_400,
}
CACHE_DIR = common.REPO / "runs" / "bench-cache" / "panel"
# What a peer's TEST result depends on besides its data: the peers, the protocol's code and the
# libraries that compute them. Any change to these files invalidates the cache.
PEER_CODE = ("benchmarks/peers.py", "train/metrics.py", "train/metric_lines.py")
PEER_CODE += ("train/ranking.py", "train/split.py", "train/interactions.py")
PEER_LIBRARIES = ("implicit", "numpy", "scipy", "torch")


# --------------------------------------------------------------------------------------------
# The members' data


def ml100k_positives(data_dir=None, min_rating: int = POSITIVE_RATING) -> Interactions:
    """MovieLens 100K's ratings ``>= min_rating`` as interactions, in file order."""
    import pandas as pd

    path = common.ml100k_dir(data_dir) / "u.data"
    frame = pd.read_csv(path, sep="\t", names=["user_id", "item_id", "rating", "timestamp"])
    frame = frame[frame.rating >= min_rating]
    return Interactions.from_ids(frame.user_id, frame.item_id, timestamps=frame.timestamp)


def earliest_share(data: Interactions, share: float = SPARSE_SHARE) -> Interactions:
    """Each user's earliest ``ceil(share * n)`` of ``n`` interactions (so at least 1).

    Rows are ordered within a user by (timestamp, file order), as the temporal split orders
    them. The result is re-indexed (items left without interactions leave the catalogue), as if
    the kept rows were a file of their own; row order is unchanged.
    """
    from mfrec.train.split import user_rank

    counts = data.user_counts()[data.user_idx]
    position = np.rint(user_rank(data) * counts)  # 1..n within the user
    # round() first: share * n is inexact in binary (0.3 * 70 = 21.000000000000004).
    keep = position <= np.ceil(np.round(share * counts, 9))
    return Interactions.from_ids(
        data.user_ids[data.user_idx[keep]],
        data.item_ids[data.item_idx[keep]],
        timestamps=None if data.timestamps is None else data.timestamps[keep],
    )


def longtail_data(settings: dict = LONGTAIL) -> Interactions:
    """mfrec's synthetic generator at ``settings`` (:data:`LONGTAIL`), as interactions."""
    from mfrec.train.ingest.synth import generate

    frame = generate(**settings)
    return Interactions.from_ids(frame.user_id, frame.item_id, timestamps=frame.timestamp)


def load_member(name: str, data_dir=None) -> Interactions:
    """A member of :data:`MEMBERS`, or a CSV path (``quality.load_dataset``)."""
    if name == "ml-100k-pos":
        return ml100k_positives(data_dir)
    if name == "ml-100k-sparse":
        return earliest_share(common.load_ml100k(data_dir))
    if name == "synthetic-longtail":
        return longtail_data()
    return quality.load_dataset(name, data_dir)


def shape(data: Interactions) -> dict:
    """Sizes and the long-tail statistics of a member."""
    per_item = data.item_counts()
    timestamps = data.timestamps
    return {
        "num_users": data.num_users,
        "num_items": data.num_items,
        "num_interactions": len(data),
        "median_per_user": float(np.median(data.user_counts())),
        "median_per_item": float(np.median(per_item)),
        "share_items_under_5": float(np.mean(per_item < 5)),
        "day_resolution": bool(timestamps is not None and np.all(timestamps % 86_400 == 0)),
    }


def data_digest(data: Interactions) -> str:
    """Digest of the interaction arrays (index spaces, rows and timestamps)."""
    digest = hashlib.sha256(f"{data.num_users} {data.num_items}".encode())
    for array in (data.user_idx, data.item_idx, data.timestamps):
        if array is not None:
            digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


def peer_code_digest() -> str:
    """Digest of :data:`PEER_CODE`, quality's peer runner and the versions of the libraries."""
    digest = hashlib.sha256()
    for name in PEER_CODE:
        digest.update(name.encode() + b"\0" + (common.REPO / name).read_bytes())
    for function in (quality.run_peer, quality.evaluate):
        digest.update(inspect.getsource(function).encode())
    versions = common.versions()
    digest.update(json.dumps({name: versions[name] for name in PEER_LIBRARIES}).encode())
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# One member


def cached_peer(
    member: str, peer: str, splits, budget: int, key: dict, cache_dir, refresh: bool = False
) -> dict:
    """``quality.run_peer``'s outcome, read from ``cache_dir`` when this key was run before.

    ``refresh`` recomputes it and rewrites the cache; ``cache_dir=None`` neither reads nor
    writes one.
    """
    train, test, fit, valid = splits
    path = None
    if cache_dir is not None:
        stem = f"{Path(member).name}-{peer}-b{budget}-{key['data']}-{key['code']}"
        path = Path(cache_dir) / f"{stem}.json"
        if path.is_file() and not refresh:
            outcome = json.loads(path.read_text())
            logger.info("%s %s: cached TEST ndcg@10 %.4f (%s)", member, peer, _ndcg(outcome), path)
            return {**outcome, "cached": str(path)}
    started = time.perf_counter()
    outcome = quality.run_peer(peer, train, test, fit, valid, budget)
    outcome["wall_seconds"] = time.perf_counter() - started
    outcome["configurations_tried"] = max(1, len(outcome["trials"]))
    outcome["computed"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    outcome["cache_key"] = {"member": member, "peer": peer, "budget": budget, **key}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(outcome, indent=1, default=_plain) + "\n")
    return {**outcome, "cached": None}


def _ndcg(outcome: dict) -> float:
    return outcome["test"][HEADLINE]


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def run_member(
    name: str, data: Interactions, budget: int, variant=None, cache_dir=None, refresh=False
) -> dict:
    """Protocol Q on one member: the tuned peers (cached), mfrec's defaults, the variant."""
    from mfrec.train.split import temporal_split

    started = time.perf_counter()
    train, test = temporal_split(data)
    fit, valid = temporal_split(train)
    systems, notes = quality.available_systems(peers.PEERS, data)
    key = {"data": data_digest(data), "code": peer_code_digest()}
    summary = {
        "shape": shape(data),
        "rows": {"train": len(train), "test": len(test), "fit": len(fit), "valid": len(valid)},
        "digests": key,
        "notes": notes,
        "systems": {},
    }
    for peer in systems:
        splits = (train, test, fit, valid)
        outcome = cached_peer(name, peer, splits, budget, key, cache_dir, refresh)
        summary["systems"][peer] = outcome
    runs = {"mfrec": None, **({"mfrec-variant": variant} if variant else {})}
    for system, overrides in runs.items():
        begun = time.perf_counter()
        outcome = quality.run_mfrec_defaults(train, test, overrides)
        outcome.update(wall_seconds=time.perf_counter() - begun, configurations_tried=1)
        outcome["params"] = dict(overrides or {})
        summary["systems"][system] = {**outcome, "cached": None}
        logger.info("%s %s: TEST ndcg@10 %.4f", name, system, _ndcg(outcome))
    summary["panel"] = panel_row(summary["systems"])
    summary["wall_seconds"] = time.perf_counter() - started
    return summary


def panel_row(systems: dict) -> dict:
    """The best tuned peer on TEST NDCG@10, and each mfrec row's ratio to it."""
    scores = {name: _ndcg(o) for name, o in systems.items() if name in peers.PEERS}
    best = max(scores, key=scores.get)
    row = {"best_peer": best, "best_peer_params": systems[best]["params"]}
    row["best_peer_ndcg@10"] = scores[best]
    for system in ("mfrec", "mfrec-variant"):
        if system in systems:
            row[system] = {"ndcg@10": _ndcg(systems[system])}
            row[system]["ratio"] = _ndcg(systems[system]) / scores[best]
    return row


def summarise(members: dict) -> dict:
    """The minimum ratio over the panel for each mfrec row, against :data:`TARGET`."""
    found = {"target": TARGET}
    for system in ("mfrec", "mfrec-variant"):
        ratios = {
            m: s["panel"][system]["ratio"] for m, s in members.items() if system in s["panel"]
        }
        if ratios:
            weakest = min(ratios, key=ratios.get)
            found[system] = {
                "min_ratio": ratios[weakest],
                "weakest_member": weakest,
                "met": bool(ratios[weakest] >= TARGET),
            }
    return found


# --------------------------------------------------------------------------------------------
# Tables and the command


def label(system: str, variant: dict | None) -> str:
    if system == "mfrec-variant":
        return "mfrec, variant: " + ", ".join(f"{k}={v}" for k, v in variant.items())
    return quality.LABELS[system]


def member_table(name: str, summary: dict, variant) -> common.Table:
    size = summary["shape"]
    table = common.Table(
        title=f"Panel — {name}: TEST metrics ({size['num_users']} users, {size['num_items']} "
        f"items, {size['num_interactions']} interactions)",
        columns=["system", "settings", *METRIC_NAMES, "tries", "source"],
    )
    for system, outcome in summary["systems"].items():
        settings = ", ".join(f"{k}={v}" for k, v in outcome["params"].items())
        source = "cached" if outcome["cached"] else "this run"
        table.rows.append(
            [
                label(system, variant),
                settings or ("no hyperparameters" if system == "mfrec" else "–"),
                *(outcome["test"][metric] for metric in METRIC_NAMES),
                outcome["configurations_tried"],
                source,
            ]
        )
    table.notes.extend(summary["notes"])
    for system, outcome in summary["systems"].items():
        if outcome["cached"]:
            table.notes.append(
                f"{label(system, variant)}: cached result computed {outcome['computed']} "
                f"(`{Path(outcome['cached']).name}`)"
            )
    return table


def shape_table(members: dict) -> common.Table:
    table = common.Table(
        title="Panel — the members' shapes",
        columns=["member", "users", "items", "interactions", "median per user"]
        + ["median per item", "items with < 5", "day timestamps", "seconds"],
    )
    for name, summary in members.items():
        size = summary["shape"]
        table.rows.append(
            [
                name,
                size["num_users"],
                size["num_items"],
                size["num_interactions"],
                f"{size['median_per_user']:g}",
                f"{size['median_per_item']:g}",
                f"{size['share_items_under_5']:.1%}",
                "yes" if size["day_resolution"] else "no",
                f"{summary['wall_seconds']:,.0f}",
            ]
        )
    table.notes.append("seconds: wall time of the member (tuning, retraining, scoring)")
    return table


def panel_table(members: dict, summary: dict, variant) -> common.Table:
    columns = ["member", "best tuned peer", "peer NDCG@10", "mfrec NDCG@10", "mfrec / peer"]
    if "mfrec-variant" in summary:
        columns += ["variant NDCG@10", "variant / peer"]
    table = common.Table("Panel — mfrec with no hyperparameters vs the best tuned peer", columns)
    for name, found in ((n, s["panel"]) for n, s in members.items()):
        row = [name, label(found["best_peer"], variant), found["best_peer_ndcg@10"]]
        row += [found["mfrec"]["ndcg@10"], found["mfrec"]["ratio"]]
        if "mfrec-variant" in summary:
            row += [found["mfrec-variant"]["ndcg@10"], found["mfrec-variant"]["ratio"]]
        table.rows.append(row)
    for system in ("mfrec", "mfrec-variant"):
        if system in summary:
            found = summary[system]
            table.notes.append(
                f"{label(system, variant)}: minimum ratio {found['min_ratio']:.3f}× "
                f"({found['weakest_member']}); target ≥ {TARGET:.2f}× on every member: "
                + ("met" if found["met"] else "NOT met")
            )
    return table


def _shown(path) -> str:
    """``path`` relative to the repository when it lies inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(common.REPO)) if path.is_relative_to(common.REPO) else str(path)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.panel",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--members",
        default=",".join(MEMBERS),
        help=f"comma-separated: {', '.join(MEMBERS)}, or CSV paths",
    )
    parser.add_argument("--data-dir", help="folder with MovieLens 100K's u.data")
    parser.add_argument(
        "--budget", type=int, default=8, help="configurations each peer tries on FIT/VALID"
    )
    parser.add_argument("--threads", type=int, default=2, help="threads for torch and BLAS")
    parser.add_argument(
        "--mfrec-set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="evaluate a variant of mfrec with these hyperparameters too (repeatable)",
    )
    parser.add_argument("--out-dir", default=str(common.RESULTS_DIR))
    parser.add_argument("--cache-dir", default=str(CACHE_DIR), help="tuned peers' TEST results")
    parser.add_argument("--no-cache", action="store_true", help="recompute (and rewrite) peers")
    args = parser.parse_args(argv)
    for member in args.members.split(","):
        if member not in MEMBERS and not Path(member).is_file():
            parser.error(f"unknown member {member!r}; choose from {', '.join(MEMBERS)}")
    if any("=" not in item for item in args.mfrec_set):
        parser.error("--mfrec-set takes NAME=VALUE")
    args.variant = dict(item.split("=", 1) for item in args.mfrec_set) or None
    if args.variant:
        from mfrec.train.config import TrainConfig
        from mfrec.train.errors import ConfigError

        try:
            TrainConfig.from_hyperparameters(args.variant)
        except ConfigError as exc:
            parser.error(f"--mfrec-set: {exc}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    common.set_threads(args.threads)
    header = common.run_header("panel", "benchmarks.panel", argv)
    started = time.perf_counter()
    members = {}
    for member in args.members.split(","):
        data = load_member(member, args.data_dir)
        name = member if member in MEMBERS else Path(member).name
        logger.info("%s: %s", name, shape(data))
        members[name] = run_member(
            member, data, args.budget, args.variant, args.cache_dir, args.no_cache
        )
    summary = summarise(members)
    seconds = time.perf_counter() - started
    cached = sum(bool(o["cached"]) for s in members.values() for o in s["systems"].values())
    notes = [
        "protocol Q per member: per-user temporal hold-out of the last 10 % (TEST), FIT/VALID "
        "the same split of TRAIN; peers tuned on FIT/VALID, retrained on TRAIN, scored once on "
        "TEST; TRAIN items excluded from ranking; Amazon Personalize metric definitions",
        f"mfrec: no hyperparameters (TrainConfig() on TRAIN); peers: up to {args.budget} "
        "configurations each",
        f"ml-100k-pos: rating >= {POSITIVE_RATING}; ml-100k-sparse: each user's earliest "
        f"ceil({SPARSE_SHARE} n) interactions (rounded up, at least 1); synthetic-longtail: "
        f"mfrec.train.ingest.synth.generate({', '.join(f'{k}={v}' for k, v in LONGTAIL.items())})",
        f"{cached} peer results read from the cache ({_shown(args.cache_dir)})"
        if cached
        else "no cached peer results used",
        f"panel wall time {seconds:,.0f} s; {args.threads} threads; the machine may be shared",
    ]
    return common.write_and_print(
        header,
        [panel_table(members, summary, args.variant), shape_table(members)]
        + [member_table(name, s, args.variant) for name, s in members.items()],
        {
            "members": members,
            "panel": summary,
            "budget": args.budget,
            "variant": args.variant,
            "longtail_settings": LONGTAIL,
            "wall_seconds": seconds,
        },
        notes,
        args.out_dir,
    )


if __name__ == "__main__":
    raise SystemExit(main())
