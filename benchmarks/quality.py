"""Benchmark Q: recommendation quality with the seed protocol (``../shared/BENCHMARKS.md``).

Per dataset: TRAIN/TEST is the per-user temporal hold-out (last 10 % of each user's rows);
FIT/VALID is the same split of TRAIN. Every tunable system tries the same number of
configurations (``--budget``) on FIT, is scored on VALID, and its best configuration is
retrained on TRAIN and scored once on TEST with ``mfrec.train.metrics.evaluate`` (all items
except the user's TRAIN items are ranked; top 25). mfrec also runs once with no
hyperparameters at all (its defaults, trained on TRAIN as a user would).

    python -m benchmarks.quality                       # ML-100K and the synthetic default
    python -m benchmarks.quality --datasets ml-100k --budget 4
    python -m benchmarks.quality --datasets ml-100k --systems mfrec,mfrec-sequence --threads 1
"""

from __future__ import annotations

import argparse
import io
import logging
import time
from pathlib import Path

import numpy as np

from benchmarks import common, peers
from mfrec.train.metric_lines import METRIC_NAMES

logger = logging.getLogger(__name__)

SYSTEMS = ("popularity", "ease", "als", "mfrec", "mfrec-tuned")
# Run only when named in --systems: mfrec's defaults with model=sequence (issue 19).
OPTIONAL_SYSTEMS = ("mfrec-sequence",)
SEQUENCE_TARGET = 1.10  # model=sequence, × mfrec's defaults' TEST NDCG@10 in the same run
DATASETS = ("ml-100k", "synthetic")
HEADLINE = "ndcg@10"
TARGETS = {"mfrec": 1.05, "mfrec-tuned": 1.10}  # × the best peer's TEST NDCG@10


# --------------------------------------------------------------------------------------------
# Data and scoring


def load_dataset(name: str, data_dir: str | None = None):
    """``ml-100k``, ``synthetic`` (mfrec's packaged default dataset) or a path to a CSV file."""
    if name == "ml-100k":
        return common.load_ml100k(data_dir)
    from mfrec.train.ingest import load_interactions

    if name == "synthetic":
        from mfrec.train.ingest.datasets import default_dataset_path

        path = default_dataset_path()
    else:
        path = Path(name)
        if not path.exists():
            raise SystemExit(f"unknown dataset {name!r}: use ml-100k, synthetic or a CSV path")
    data, _report = load_interactions(path)
    return data


def artifact_scorer(artifact):
    """``score_users`` of a trained mfrec artifact (the formula serving uses)."""
    import torch

    def score_users(user_idx):
        rows = user_idx.cpu().numpy()
        scores = artifact.user_embeddings[rows] @ artifact.item_embeddings.T
        scores += artifact.item_biases[None, :] + artifact.user_biases[rows, None]
        return torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32))

    return score_users


def evaluate(scorer, train, test) -> dict:
    from mfrec.train.metrics import evaluate as mfrec_evaluate

    return mfrec_evaluate(scorer, train, test, k=25, exclude_seen=True, device="cpu")


# --------------------------------------------------------------------------------------------
# mfrec


def mfrec_grid(budget: int) -> list[dict[str, str]]:
    """``budget`` hyperparameter sets around mfrec's defaults, the defaults first.

    Relative to the current defaults (so the grid follows them when they change): recency
    weighting switched, the embedding size and learning rate doubled and halved, the L2
    penalty doubled and halved, four times the negatives, the other schedule and sampling, a
    user bias.
    """
    from mfrec.train.config import TrainConfig

    base = TrainConfig()
    candidates = [
        {},
        # Recency weighting half-way (auto chooses between 0 and 1), or switched: it helps
        # when tastes drift (MovieLens), and costs signal when they do not.
        {"recency_min_weight": _other_recency(base.recency_min_weight)},
        {"embedding_dim": str(base.embedding_dim * 2)},
        {"learning_rate": str(base.learning_rate / 2)},
        {"l2": "0.0001" if base.l2 == 0 else str(base.l2 / 2)},
        {"l2": "0.001" if base.l2 == 0 else str(base.l2 * 2)},
        {"num_negatives": str(base.negatives * 4)},
        {"learning_rate": str(base.learning_rate * 2)},
        {"embedding_dim": str(max(8, base.embedding_dim // 2))},
        {"lr_schedule": "cosine" if base.lr_schedule == "constant" else "constant"},
        {
            "embedding_dim": str(base.embedding_dim * 2),
            "learning_rate": str(base.learning_rate / 2),
        },
        {"negative_sampling": "popularity" if base.negative_sampling == "uniform" else "uniform"},
        {"user_bias": str(not base.user_bias).lower()},
    ]
    return candidates[:budget]


def _other_recency(value: float | None) -> str:
    if value is None:
        return "0.5"
    return "1.0" if value < 1 else "0.0"


def train_mfrec(data, hyperparameters: dict[str, str], valid=None, overrides=None):
    """Train mfrec with string hyperparameters, as a SageMaker job would parse them."""
    from mfrec.train.config import TrainConfig
    from mfrec.train.pipeline import train_model

    config = TrainConfig.from_hyperparameters({**hyperparameters, **(overrides or {})})
    started = time.perf_counter()
    result = train_model(data, config, valid=valid, out=io.StringIO())
    return result, time.perf_counter() - started


def run_mfrec_defaults(train, test, overrides=None) -> dict:
    """No hyperparameters: mfrec's own hold-out of TRAIN (= FIT/VALID), early stopping, refit."""
    result, seconds = train_mfrec(train, {}, overrides=overrides)
    return {
        "params": {},
        "fit_seconds": seconds,
        "best_epoch": result.metrics.get("best_epoch"),
        "test": evaluate(artifact_scorer(result.artifact), train, test),
        "config": result.artifact.config,
    }


def run_mfrec_tuned(train, test, fit, valid, budget: int, overrides=None) -> dict:
    """Each grid entry trained on FIT with VALID for early stopping, scored on VALID; the best
    one retrained on TRAIN the way the defaults are (its hold-out of TRAIN is exactly FIT/VALID,
    so it stops at the same epoch and refits on TRAIN with the same schedule)."""
    trials = []
    for params in mfrec_grid(budget):
        result, seconds = train_mfrec(fit, params, valid=valid, overrides=overrides)
        metrics = evaluate(artifact_scorer(result.artifact), fit, valid)
        epoch = result.metrics.get("best_epoch")
        trials.append(
            {"params": params, "valid": metrics, "best_epoch": epoch, "fit_seconds": seconds}
        )
        logger.info("mfrec %s: VALID ndcg@10 %.4f (epoch %s)", params, metrics[HEADLINE], epoch)
    chosen = max(trials, key=lambda trial: trial["valid"][HEADLINE])
    result, seconds = train_mfrec(train, chosen["params"], overrides=overrides)
    return {
        "params": chosen["params"],
        "fit_seconds": seconds,
        "best_epoch": result.metrics.get("best_epoch"),
        "valid": chosen["valid"],
        "test": evaluate(artifact_scorer(result.artifact), train, test),
        "config": result.artifact.config,
        "trials": trials,
    }


# --------------------------------------------------------------------------------------------
# Peers


def run_peer(name: str, train, test, fit, valid, budget: int) -> dict:
    trials = []
    configs = peers.grid(name, budget)
    for params in configs if len(configs) > 1 else []:
        fitted = peers.fit(name, fit, params)
        metrics = evaluate(fitted.score_users, fit, valid)
        trials.append({"params": params, "valid": metrics, "fit_seconds": fitted.fit_seconds})
        logger.info("%s %s: VALID ndcg@10 %.4f", name, params, metrics[HEADLINE])
    chosen = max(trials, key=lambda t: t["valid"][HEADLINE]) if trials else {"params": configs[0]}
    fitted = peers.fit(name, train, chosen["params"])
    return {
        "params": chosen["params"],
        "fit_seconds": fitted.fit_seconds,
        "valid": chosen.get("valid"),
        "test": evaluate(fitted.score_users, train, test),
        "trials": trials,
    }


def available_systems(requested, data) -> tuple[list[str], list[str]]:
    """The requested systems that can run here, and a note for each one that cannot."""
    systems, notes = [], []
    for name in requested:
        if name == "als":
            try:
                import implicit  # noqa: F401
            except ImportError:
                notes.append("ALS skipped: `implicit` is not installed (pip install implicit)")
                continue
        if name == "ease" and data.num_items > peers.MAX_EASE_ITEMS:
            notes.append(f"EASE skipped: {data.num_items} items need a dense item × item inverse")
            continue
        systems.append(name)
    return systems, notes


# --------------------------------------------------------------------------------------------
# One dataset, the tables, the command


def run_dataset(data, systems, budget: int, mfrec_overrides=None) -> dict:
    from mfrec.train.split import temporal_split

    train, test = temporal_split(data)
    fit, valid = temporal_split(train)
    systems, notes = available_systems(systems, data)
    summary = {
        "num_users": data.num_users,
        "num_items": data.num_items,
        "num_interactions": len(data),
        "rows": {"train": len(train), "test": len(test), "fit": len(fit), "valid": len(valid)},
        "notes": notes,
        "systems": {},
    }
    for name in systems:
        started = time.perf_counter()
        if name == "mfrec":
            outcome = run_mfrec_defaults(train, test, mfrec_overrides)
        elif name == "mfrec-sequence":
            outcome = run_mfrec_defaults(
                train, test, {**(mfrec_overrides or {}), "model": "sequence"}
            )
            outcome["params"] = {"model": "sequence"}
        elif name == "mfrec-tuned":
            outcome = run_mfrec_tuned(train, test, fit, valid, budget, mfrec_overrides)
        else:
            outcome = run_peer(name, train, test, fit, valid, budget)
        outcome["wall_seconds"] = time.perf_counter() - started
        outcome["configurations_tried"] = max(1, len(outcome.get("trials", [])))
        summary["systems"][name] = outcome
        logger.info("%s: TEST ndcg@10 %.4f", name, outcome["test"][HEADLINE])
    summary["targets"] = targets(summary["systems"])
    return summary


def targets(systems: dict) -> dict:
    """Each mfrec row's TEST NDCG@10 as a multiple of the best peer's, against its target."""
    found = {}
    if "mfrec-sequence" in systems and "mfrec" in systems:
        mf = systems["mfrec"]["test"][HEADLINE]
        ratio = systems["mfrec-sequence"]["test"][HEADLINE] / mf if mf else 0.0
        found["mfrec-sequence"] = {
            "ratio_to_mfrec": ratio,
            "target": SEQUENCE_TARGET,
            "met": bool(ratio >= SEQUENCE_TARGET),
            "needed_ndcg@10": SEQUENCE_TARGET * mf,
        }
    peer_scores = {n: s["test"][HEADLINE] for n, s in systems.items() if n in peers.PEERS}
    if not peer_scores:
        return found
    best = max(peer_scores, key=peer_scores.get)
    found.update({"best_peer": best, "best_peer_ndcg@10": peer_scores[best]})
    for name, factor in TARGETS.items():
        if name in systems:
            ratio = systems[name]["test"][HEADLINE] / peer_scores[best]
            found[name] = {
                "ratio": ratio,
                "target": factor,
                "met": bool(ratio >= factor),
                "needed_ndcg@10": factor * peer_scores[best],
            }
    return found


LABELS = {
    "popularity": "popularity",
    "ease": "EASE",
    "als": "implicit ALS",
    "mfrec": "mfrec, defaults",
    "mfrec-tuned": "mfrec, tuned on VALID",
    "mfrec-sequence": "mfrec, model=sequence",
}


def tables(results: dict, budget: int) -> list[common.Table]:
    out = []
    for dataset, summary in results.items():
        table = common.Table(
            title=f"Q — {dataset}: TEST metrics ({summary['num_users']} users, "
            f"{summary['num_items']} items, {summary['num_interactions']} interactions)",
            columns=["system", "settings", *METRIC_NAMES, "tries"],
        )
        for name, outcome in summary["systems"].items():
            settings = ", ".join(f"{k}={v}" for k, v in outcome["params"].items()) or "defaults"
            table.rows.append(
                [
                    LABELS[name],
                    settings,
                    *(outcome["test"][m] for m in METRIC_NAMES),
                    outcome["configurations_tried"],
                ]
            )
        table.notes.extend(summary["notes"])
        found = summary["targets"]
        if "mfrec-sequence" in found:
            t = found["mfrec-sequence"]
            table.notes.append(
                f"mfrec, model=sequence: {t['ratio_to_mfrec']:.3f}× mfrec's defaults (target ≥ "
                f"{t['target']:.2f}×, i.e. NDCG@10 ≥ {t['needed_ndcg@10']:.4f}): "
                + ("met" if t["met"] else "NOT met")
            )
        if "best_peer" in found:
            table.notes.append(
                f"best peer: {LABELS[found['best_peer']]}, TEST NDCG@10 "
                f"{found['best_peer_ndcg@10']:.4f}; each tuned system tried up to {budget} "
                "configurations on FIT/VALID"
            )
            for name in TARGETS:
                if name in found:
                    t = found[name]
                    table.notes.append(
                        f"{LABELS[name]}: {t['ratio']:.3f}× the best peer (target ≥ "
                        f"{t['target']:.2f}×, i.e. NDCG@10 ≥ {t['needed_ndcg@10']:.4f}): "
                        + ("met" if t["met"] else "NOT met")
                    )
        out.append(table)
    return out


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.quality",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--datasets",
        default=",".join(DATASETS),
        help="comma-separated: ml-100k, synthetic, or CSV paths",
    )
    parser.add_argument("--data-dir", help="folder with MovieLens 100K's u.data")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset")
    parser.add_argument(
        "--budget",
        type=int,
        default=8,
        help="configurations each tunable system tries on FIT/VALID",
    )
    parser.add_argument("--threads", type=int, default=2, help="threads for torch and BLAS")
    parser.add_argument("--out-dir", default=str(common.RESULTS_DIR))
    parser.add_argument(
        "--mfrec-set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="force an mfrec hyperparameter in every mfrec run (smoke tests)",
    )
    args = parser.parse_args(argv)
    unknown = set(args.systems.split(",")) - set(SYSTEMS) - set(OPTIONAL_SYSTEMS)
    if unknown:
        choices = ", ".join(SYSTEMS + OPTIONAL_SYSTEMS)
        parser.error(f"unknown systems {sorted(unknown)}; choose from {choices}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    common.set_threads(args.threads)
    header = common.run_header("quality", "benchmarks.quality", argv)
    overrides = dict(item.split("=", 1) for item in args.mfrec_set)
    results = {}
    for dataset in args.datasets.split(","):
        data = load_dataset(dataset, args.data_dir)
        label = dataset if dataset in DATASETS else Path(dataset).name
        results[label] = run_dataset(data, args.systems.split(","), args.budget, overrides)
    notes = [
        "seed protocol: per-user temporal hold-out of the last 10 % (TEST), FIT/VALID the same "
        "split of TRAIN; TRAIN items excluded from ranking; Amazon Personalize metric "
        "definitions (mfrec.train.metrics)",
        f"{args.threads} threads; the machine may be shared with other jobs",
    ]
    if overrides:
        notes.append(f"mfrec runs forced: {overrides}")
    return common.write_and_print(
        header,
        tables(results, args.budget),
        {"datasets": results, "budget": args.budget},
        notes,
        args.out_dir,
    )


if __name__ == "__main__":
    raise SystemExit(main())
