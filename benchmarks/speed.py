"""Benchmark T: training speed (``../shared/BENCHMARKS.md``, part T).

For each dataset (MovieLens 100K and synthetic data of a given size from mfrec's own generator)
the TRAIN part of the seed split is split again into FIT/VALID; each system trains on FIT and
is scored on VALID (NDCG@10, ``mfrec.train.metrics``) after every epoch, in a process of its
own (its peak resident memory is that process's ``ru_maxrss``). Evaluation time is excluded
from the training times. Reported per system:

- seconds per epoch (median over the epochs run; for ALS, per iteration);
- time to plateau: training seconds until VALID NDCG@10 first comes within 1 % of its best;
  for ALS also the time to its best iteration;
- the best VALID NDCG@10 and the peak RSS.

Systems: ``mfrec`` (defaults, its own loop), ``als`` (implicit), and ``naive``: a reference loop
written here with Spotlight's defaults (32 dimensions, batch 256, one uniform negative per
positive, Adam at 0.01, a pointwise logistic loss), moving each mini-batch from NumPy to torch
as a straightforward implementation does. Its runs are time-boxed (``--naive-seconds``): when
the first epoch does not finish in time, its time is extrapolated from the batches done, and
the result says so.

    python -m benchmarks.speed                        # ML-100K and synthetic 1M
    python -m benchmarks.speed --sizes ml-100k,1m,10m --threads 2
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import re
import time
from pathlib import Path

import numpy as np

from benchmarks import common, peers

logger = logging.getLogger(__name__)

# mfrec with settings chosen for CPU speed (benchmarks/NOTES.md, "A lean CPU configuration"):
# a cheaper step, at a lower VALID NDCG@10 than the defaults but far above the naive loop's.
LEAN = {"embedding_dim": "32", "num_negatives": "32", "batch_size": "4096"}
# The mfrec systems and the hyperparameters each sets on top of the defaults.
PRESETS = {"mfrec": {}, "mfrec-lean": LEAN}
MFREC_SYSTEMS = tuple(PRESETS)
SYSTEMS = (*MFREC_SYSTEMS, "als", "naive")
PLATEAU = 0.99  # within 1 % of the best VALID NDCG@10
DATA_DIR = Path("/tmp/mfrec-bench-data")
NAIVE = {"embedding_dim": 32, "batch_size": 256, "learning_rate": 0.01, "num_negatives": 1}


# --------------------------------------------------------------------------------------------
# Data


def parse_size(name: str) -> int | None:
    """Interactions in a synthetic size name ("20k", "1m", "10m"); None for ``ml-100k``."""
    if name == "ml-100k":
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([km]?)", name.lower())
    if not match:
        raise ValueError(f"unknown size {name!r}; use ml-100k or a count such as 1m, 10m, 500k")
    factor = {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2)]
    return int(float(match.group(1)) * factor)


def synthetic_path(size: str, data_dir: Path, seed: int = 0) -> Path:
    """mfrec's synthetic data of ``size`` interactions, generated (streamed) once and reused."""
    from mfrec.train.ingest.synth import write_synthetic

    path = data_dir / f"synthetic-{size}-seed{seed}.csv"
    if not path.is_file():
        data_dir.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.csv")
        started = time.perf_counter()
        write_synthetic(partial, parse_size(size), seed=seed)
        partial.replace(path)
        logger.info("generated %s in %.1f s", path, time.perf_counter() - started)
    return path


def load(size: str, data_dir: Path, ml100k_dir: str | None):
    if size == "ml-100k":
        return common.load_ml100k(ml100k_dir)
    from mfrec.train.ingest import load_interactions

    data, _report = load_interactions(synthetic_path(size, data_dir))
    return data


def fit_valid(data, eval_users: int, seed: int = 0):
    """FIT/VALID (the seed split of the seed split's TRAIN), VALID cut to ``eval_users`` users.

    Scoring every VALID user after every epoch would dominate the run on large data, so a fixed
    random sample of users is scored (the same for every system).
    """
    from mfrec.train.split import temporal_split

    train, _ = temporal_split(data)
    fit, valid = temporal_split(train)
    users = np.unique(valid.user_idx)
    if len(users) > eval_users:
        chosen = np.random.default_rng(seed).choice(users, eval_users, replace=False)
        valid = valid.subset(np.isin(valid.user_idx, chosen))
    return fit, valid


def prepare(size: str, args) -> Path:
    """FIT and VALID of a dataset saved as one ``.npz`` that every worker loads in seconds.

    Importing and splitting 10M+ rows takes longer than some of the runs timed, so the parent
    process does it once per dataset; the file lives beside the synthetic data (never in the
    repository).
    """
    folder = Path(args.synth_dir)
    path = folder / f"prepared-{size}-seed{args.seed}-eval{args.eval_users}.npz"
    if path.is_file():
        return path
    started = time.perf_counter()
    fit, valid = fit_valid(load(size, folder, args.data_dir), args.eval_users, args.seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"user_ids": fit.user_ids, "item_ids": fit.item_ids}
    for name, part in (("fit", fit), ("valid", valid)):
        arrays[f"{name}_user_idx"] = part.user_idx
        arrays[f"{name}_item_idx"] = part.item_idx
        if part.timestamps is not None:
            arrays[f"{name}_timestamps"] = part.timestamps
        if part.weights is not None:
            arrays[f"{name}_weights"] = part.weights
    partial = path.with_suffix(".partial.npz")
    np.savez(partial, **arrays)
    partial.replace(path)
    logger.info("prepared %s in %.1f s", path, time.perf_counter() - started)
    return path


def load_prepared(path: Path):
    """``(fit, valid)`` Interactions from a file written by :func:`prepare`."""
    from mfrec.train.interactions import Interactions

    with np.load(path, allow_pickle=False) as arrays:
        found = {name: arrays[name] for name in arrays.files}
    parts = []
    for name in ("fit", "valid"):
        parts.append(
            Interactions(
                user_idx=found[f"{name}_user_idx"],
                item_idx=found[f"{name}_item_idx"],
                user_ids=found["user_ids"],
                item_ids=found["item_ids"],
                timestamps=found.get(f"{name}_timestamps"),
                weights=found.get(f"{name}_weights"),
            )
        )
    return tuple(parts)


def ndcg_at_10(scorer, fit, valid) -> float:
    from mfrec.train.metrics import evaluate

    return evaluate(scorer, fit, valid, k=10, device="cpu")["ndcg@10"]


def factor_scorer(user_factors, item_factors, item_bias):
    return lambda user_idx: peers.factor_scores(user_factors, item_factors, item_bias, user_idx)


# --------------------------------------------------------------------------------------------
# The naive reference loop (Spotlight's defaults, written here)


def naive_model(num_users: int, num_items: int, embedding_dim: int, seed: int):
    """Embeddings ~ N(0, 1/dim²) and zero biases, as ``torch.nn.Embedding`` tables."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    model = torch.nn.ModuleDict(
        {
            "user": torch.nn.Embedding(num_users, embedding_dim),
            "item": torch.nn.Embedding(num_items, embedding_dim),
            "user_bias": torch.nn.Embedding(num_users, 1),
            "item_bias": torch.nn.Embedding(num_items, 1),
        }
    )
    with torch.no_grad():
        for name in ("user", "item"):
            model[name].weight.normal_(0.0, 1.0 / embedding_dim, generator=generator)
        model["user_bias"].weight.zero_()
        model["item_bias"].weight.zero_()
    return model


def naive_score(model, user_idx, item_idx):
    dot = (model["user"](user_idx) * model["item"](item_idx)).sum(dim=1)
    return dot + model["user_bias"](user_idx).squeeze(1) + model["item_bias"](item_idx).squeeze(1)


def naive_loss(positive, negative, loss: str):
    """Pointwise: logistic loss with positives 1 and negatives 0; BPR: -log σ(pos - neg)."""
    import torch.nn.functional as F

    if loss == "bpr":
        return F.softplus(negative - positive).mean()
    return F.softplus(-positive).mean() + F.softplus(negative).mean()


def run_naive(fit, valid, args) -> dict:
    """Epochs of the naive loop until ``--naive-epochs`` or ``--naive-seconds`` of training."""
    import torch

    device = torch.device(args.device)
    model = naive_model(fit.num_users, fit.num_items, NAIVE["embedding_dim"], args.seed)
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=NAIVE["learning_rate"])
    rng = np.random.default_rng(args.seed)
    num_batches = math.ceil(len(fit) / NAIVE["batch_size"])
    history, trained = [], 0.0
    for epoch in range(1, args.naive_epochs + 1):
        started = time.perf_counter()
        order = rng.permutation(len(fit))
        done, epoch_loss = 0, 0.0
        for start in range(0, len(fit), NAIVE["batch_size"]):
            batch = order[start : start + NAIVE["batch_size"]]
            # Each mini-batch is gathered in NumPy and copied to the device, one at a time.
            user_idx = torch.from_numpy(fit.user_idx[batch]).to(device)
            item_idx = torch.from_numpy(fit.item_idx[batch]).to(device)
            negative_idx = torch.from_numpy(rng.integers(0, fit.num_items, len(batch))).to(device)
            loss = naive_loss(
                naive_score(model, user_idx, item_idx),
                naive_score(model, user_idx, negative_idx),
                args.naive_loss,
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            # Reading the loss back every batch, as simple loops do to log it, also
            # synchronises with a GPU, so the time box sees the real elapsed time.
            epoch_loss += loss.item()
            done += 1
            if trained + time.perf_counter() - started > args.naive_seconds:
                break
        seconds = time.perf_counter() - started
        trained += seconds
        complete = done == num_batches
        entry = {"epoch": epoch, "train_seconds": trained, "complete": complete}
        entry["loss"] = epoch_loss / done
        entry["epoch_seconds"] = seconds if complete else seconds * num_batches / done
        with torch.no_grad():
            weights = {
                name: model[name].weight.cpu().numpy() for name in ("user", "item", "item_bias")
            }
        scorer = factor_scorer(weights["user"], weights["item"], weights["item_bias"][:, 0])
        entry["valid_ndcg@10"] = ndcg_at_10(scorer, fit, valid)
        history.append(entry)
        logger.info("naive epoch %d: %s", epoch, entry)
        if not complete or trained > args.naive_seconds:
            break
    summary = summarise(history)
    summary["batches_per_epoch"] = num_batches
    summary["settings"] = {**NAIVE, "loss": args.naive_loss, "optimizer": "adam"}
    return summary


# --------------------------------------------------------------------------------------------
# implicit's ALS and mfrec


def als_params(args) -> dict:
    params = dict(peers.GRIDS["als"][0])
    for item in args.als:
        name, value = item.split("=", 1)
        params[name] = type(params[name])(value) if name in params else float(value)
    return params


def run_als(fit, valid, args) -> dict:
    history = []

    def on_iteration(iteration, user_factors, item_factors):
        bias = np.zeros(fit.num_items, dtype=np.float32)
        history.append(
            {
                "valid_ndcg@10": ndcg_at_10(
                    factor_scorer(user_factors, item_factors, bias), fit, valid
                )
            }
        )

    params = als_params(args)
    fitted = peers.als(fit, **params, num_threads=args.threads, on_iteration=on_iteration)
    previous = 0.0
    for entry, timing in zip(history, fitted.history, strict=True):
        entry.update(
            epoch=timing["iteration"],
            train_seconds=timing["seconds"],
            epoch_seconds=timing["seconds"] - previous,
        )
        previous = timing["seconds"]
    summary = summarise(history)
    best = max(history, key=lambda e: e["valid_ndcg@10"])
    summary["time_to_best_seconds"] = best["train_seconds"]
    summary["settings"] = params
    return summary


def run_mfrec(fit, valid, args) -> dict:
    """mfrec with its defaults plus the worker's preset (:data:`PRESETS`) and ``--mfrec-set``,
    through its own pipeline."""
    from mfrec.train.config import TrainConfig
    from mfrec.train.pipeline import train_model

    hyperparameters = {"device": args.device, **PRESETS[args.worker]}
    hyperparameters.update(item.split("=", 1) for item in args.mfrec_set)
    config = TrainConfig.from_hyperparameters(hyperparameters)
    started = time.perf_counter()
    result = train_model(fit, config, valid=valid, out=io.StringIO())
    wall = time.perf_counter() - started
    probe = sum(found["seconds"] for found in result.metrics.get("probes", []))
    summary = summarise(mfrec_history(result.history, start_seconds=probe))
    summary["probe_seconds"] = probe
    summary["model"] = result.metrics.get("model")
    summary["wall_seconds_with_evaluation"] = wall
    summary["settings"] = result.artifact.config
    return summary


def mfrec_history(history, start_seconds: float = 0.0) -> list[dict]:
    """mfrec's per-epoch records as {epoch, epoch_seconds, train_seconds, valid_ndcg@10}.

    mfrec's ``epoch_seconds`` excludes its validation, which is ``mfrec.train.metrics`` on the
    same VALID set the other systems are scored on. ``start_seconds`` is training time spent
    before the first epoch (the probes of ``recency_min_weight=auto``): it counts towards the
    time to plateau.
    """
    out, trained = [], start_seconds
    for record in history:
        trained += record["epoch_seconds"]
        out.append(
            {
                "epoch": record["epoch"],
                "epoch_seconds": record["epoch_seconds"],
                "train_seconds": trained,
                "valid_ndcg@10": record.get("val_ndcg@10"),
                "loss": record.get("train_loss"),
            }
        )
    return out


def summarise(history: list[dict]) -> dict:
    """Epoch times, time to the VALID plateau and the best VALID NDCG@10 of a history.

    Epoch times come from complete epochs (an epoch cut by a time box is extrapolated only when
    no epoch completed): the median, and the minimum, which is the better estimate of a
    system's own cost on a machine whose other jobs slow some epochs down.
    """
    scored = [e for e in history if e.get("valid_ndcg@10") is not None]
    best = max((e["valid_ndcg@10"] for e in scored), default=None)
    plateau = None
    if best is not None:
        plateau = next(e["train_seconds"] for e in scored if e["valid_ndcg@10"] >= PLATEAU * best)
    complete = [e for e in history if e.get("complete", True)] or history
    times = [e["epoch_seconds"] for e in complete]
    return {
        "epochs": len(history),
        "epoch_seconds": float(np.median(times)),
        "epoch_seconds_min": float(min(times)),
        "extrapolated": not any(e.get("complete", True) for e in history),
        "time_to_plateau_seconds": plateau,
        "best_valid_ndcg@10": best,
        "history": history,
    }


RUNNERS = {**dict.fromkeys(MFREC_SYSTEMS, run_mfrec), "als": run_als, "naive": run_naive}


def worker(args) -> int:
    """One system on one dataset, in this process; writes its summary to ``--result-file``."""
    common.set_threads(args.threads)
    fit, valid = load_prepared(prepare(args.size, args))
    rss_before = common.current_rss_mib()
    summary = RUNNERS[args.worker](fit, valid, args)
    summary.update(
        system=args.worker,
        size=args.size,
        fit_interactions=len(fit),
        num_users=fit.num_users,
        num_items=fit.num_items,
        valid_users=int(len(np.unique(valid.user_idx))),
        rss_before_training_mib=rss_before,
        peak_rss_mib=common.peak_rss_mib(),
    )
    Path(args.result_file).write_text(json.dumps(summary, default=float))
    return 0


# --------------------------------------------------------------------------------------------
# The run: one worker process per (dataset, system), then the tables


def ratio(numerator, denominator):
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def compare(found: dict) -> dict:
    """The targets on one dataset, for each mfrec configuration run: naive epoch / mfrec epoch
    ≥ 20 at equal or better VALID NDCG@10, and mfrec's time to plateau ≤ ALS's time to its
    best. Returns ``{mfrec system: {measure: value}}``."""
    als, naive = found.get("als"), found.get("naive")
    out = {}
    for name in MFREC_SYSTEMS:
        mfrec = found.get(name)
        if not mfrec:
            continue
        cmp = out[name] = {}
        if naive:
            speedup = ratio(naive["epoch_seconds"], mfrec["epoch_seconds"])
            quality = mfrec["best_valid_ndcg@10"] >= naive["best_valid_ndcg@10"]
            cmp["naive_epoch_over_mfrec_epoch"] = speedup
            cmp["naive_epoch_over_mfrec_epoch_fastest"] = ratio(
                naive.get("epoch_seconds_min"), mfrec.get("epoch_seconds_min")
            )
            cmp["mfrec_ndcg_at_least_naive"] = bool(quality)
            cmp["naive_target_met"] = bool(speedup >= 20 and quality)
        if als:
            plateau = ratio(mfrec["time_to_plateau_seconds"], als["time_to_best_seconds"])
            cmp["mfrec_plateau_over_als_best"] = plateau
            cmp["mfrec_epoch_over_als_iteration"] = ratio(
                mfrec["epoch_seconds"], als["epoch_seconds"]
            )
            cmp["als_target_met"] = bool(plateau is not None and plateau <= 1.0)
    return out


def tables(results: dict, args) -> list[common.Table]:
    ratios = common.Table(
        title=f"T — training speed ({args.device}), as ratios within each run",
        columns=[
            "dataset",
            "mfrec settings",
            "naive epoch ÷ mfrec epoch (target ≥ 20): median [fastest]",
            "VALID NDCG@10 mfrec / naive",
            "mfrec time to plateau ÷ ALS time to best (target ≤ 1)",
            "mfrec epoch ÷ ALS iteration",
            "peak RSS MiB mfrec / ALS / naive",
        ],
    )
    raw = common.Table(
        title=f"T — measured times ({args.threads} threads on a shared machine; indicative)",
        columns=[
            "dataset",
            "system",
            "FIT interactions",
            "s / epoch",
            "fastest epoch s",
            "epochs run",
            "s to plateau",
            "s to best",
            "best VALID NDCG@10",
            "peak RSS MiB",
        ],
    )
    for size, found in results.items():
        systems = found["systems"]
        for name, cmp in found["targets"].items():
            ndcgs = [systems.get(n, {}).get("best_valid_ndcg@10") for n in (name, "naive")]
            rss = " / ".join(
                f"{systems[n]['peak_rss_mib']:.0f}" if n in systems else "–"
                for n in (name, "als", "naive")
            )
            ratios.rows.append(
                [
                    size,
                    _settings(name, args),
                    _ratio_cell(
                        cmp.get("naive_epoch_over_mfrec_epoch"), cmp.get("naive_target_met")
                    )
                    + _fastest(cmp.get("naive_epoch_over_mfrec_epoch_fastest")),
                    " / ".join("–" if v is None else f"{v:.4f}" for v in ndcgs),
                    _ratio_cell(cmp.get("mfrec_plateau_over_als_best"), cmp.get("als_target_met")),
                    cmp.get("mfrec_epoch_over_als_iteration"),
                    rss,
                ]
            )
        for name, summary in systems.items():
            epoch = summary["epoch_seconds"]
            raw.rows.append(
                [
                    size,
                    name + (" (epoch extrapolated)" if summary.get("extrapolated") else ""),
                    summary["fit_interactions"],
                    epoch,
                    summary.get("epoch_seconds_min"),
                    summary["epochs"],
                    summary["time_to_plateau_seconds"],
                    summary.get("time_to_best_seconds"),
                    summary["best_valid_ndcg@10"],
                    summary["peak_rss_mib"],
                ]
            )
        ratios.notes.extend(found["notes"])
    raw.notes.append(
        "s / epoch is the median over the complete epochs run (ALS: per iteration), the target "
        "is judged on it; the fastest epoch shows each system's cost with the least "
        "interference from other jobs; plateau = first epoch within 1 % of the best VALID "
        "NDCG@10; VALID scoring time excluded"
    )
    return [ratios, raw]


def _settings(name: str, args) -> str:
    """The mfrec settings of a row: its preset and ``--mfrec-set``."""
    preset = PRESETS[name]
    forced = dict(item.split("=", 1) for item in args.mfrec_set)
    words = [f"{key}={value}" for key, value in {**preset, **forced}.items()]
    label = "lean" if preset else "defaults"
    return label + (": " + ", ".join(words) if words else "")


def _fastest(value) -> str:
    return "" if value is None else f" [{value:.2f}]"


def _ratio_cell(value, met) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" + ("" if met is None else (" (met)" if met else " (NOT met)"))


def build_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options of this benchmark (``benchmarks.gpu`` adds its own to them)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="ml-100k,1m", help="comma-separated: ml-100k and synthetic sizes (1m)"
    )
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset")
    parser.add_argument("--threads", type=int, default=2, help="threads for every system")
    parser.add_argument("--device", default="cpu", help="device of mfrec and the naive loop")
    parser.add_argument("--data-dir", help="folder with MovieLens 100K's u.data")
    parser.add_argument("--synth-dir", default=str(DATA_DIR), help="where synthetic data goes")
    parser.add_argument("--eval-users", type=int, default=2000, help="VALID users scored")
    parser.add_argument("--naive-epochs", type=int, default=10, help="naive loop: most epochs")
    parser.add_argument("--naive-loss", choices=("pointwise", "bpr"), default="pointwise")
    parser.add_argument(
        "--naive-seconds", type=float, default=120.0, help="naive loop: training time box"
    )
    parser.add_argument(
        "--als", action="append", default=[], metavar="NAME=VALUE", help="ALS setting"
    )
    parser.add_argument(
        "--mfrec-set", action="append", default=[], metavar="NAME=VALUE", help="mfrec setting"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=3600.0, help="per worker, seconds")
    parser.add_argument("--out-dir", default=str(common.RESULTS_DIR))
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the systems in this process (smoke tests; peak RSS then not per system)",
    )
    parser.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    return parser


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    for size in args.sizes.split(","):
        try:
            parse_size(size)
        except ValueError as exc:
            parser.error(str(exc))
    unknown = set(args.systems.split(",")) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}; choose from {', '.join(SYSTEMS)}")
    return args


def shared_args(args) -> list[str]:
    """The options a worker process needs, as command-line words."""
    passed = ["--synth-dir", args.synth_dir]
    for name in (
        "threads",
        "device",
        "eval_users",
        "naive_epochs",
        "naive_loss",
        "naive_seconds",
        "seed",
    ):
        passed += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    if args.data_dir:
        passed += ["--data-dir", args.data_dir]
    for item in args.als:
        passed += ["--als", item]
    for item in args.mfrec_set:
        passed += ["--mfrec-set", item]
    return passed


def run_systems(size: str, args, module: str = "benchmarks.speed") -> dict:
    """Every system of ``--systems`` on one dataset, each in a worker process of ``module``."""
    prepare(size, args)  # generated, imported and split outside the workers' timing
    found = {"systems": {}, "notes": []}
    for system in args.systems.split(","):
        if system == "als" and not common.has_module("implicit"):
            found["notes"].append(f"{size}: ALS skipped (`implicit` is not installed)")
            continue
        logger.info("%s on %s ...", system, size)
        passed = ["--worker", system, "--size", size, *shared_args(args)]
        found["systems"][system] = common.run_worker(
            module, passed, timeout=args.timeout, in_process=args.in_process
        )
        if found["systems"][system].get("extrapolated"):
            found["notes"].append(
                f"{size}: the naive loop's epoch did not finish within --naive-seconds "
                f"{args.naive_seconds:g}; its epoch time is extrapolated from the batches "
                "done and its NDCG is that of a partial epoch"
            )
    found["targets"] = compare(found["systems"])
    return found


def main(argv: list[str] | None = None) -> int:
    parser = build_parser("python -m benchmarks.speed", __doc__)
    args = check_args(parser, parser.parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.worker:
        return worker(args)
    header = common.run_header("speed", "benchmarks.speed", argv)
    results = {size: run_systems(size, args) for size in args.sizes.split(",")}
    notes = [
        f"{args.device}, {args.threads} threads for every system, on a machine shared with other "
        "jobs: compare the ratios, not the absolute times",
        f"FIT/VALID = the seed split of the seed split's TRAIN; VALID NDCG@10 over at most "
        f"{args.eval_users} VALID users (the same for every system), scoring time excluded",
        "ALS settings: " + json.dumps(als_params(args)),
        "naive loop: " + json.dumps({**NAIVE, "loss": args.naive_loss, "optimizer": "adam"}),
        "mfrec-lean: mfrec's defaults except " + json.dumps(LEAN),
    ]
    if args.mfrec_set:
        notes.append(f"mfrec hyperparameters set for this run: {', '.join(args.mfrec_set)}")
    return common.write_and_print(
        header, tables(results, args), {"datasets": results}, notes, args.out_dir
    )


if __name__ == "__main__":
    raise SystemExit(main())
