"""Quality of the serving-time request types on MovieLens 100K (issue 7), seed protocol splits.

1. **Fold-in** (``history`` requests): 10% of the users (seeded) are held out of training
   entirely. Each is folded in from its TRAIN interactions (the first 90% of its history, protocol
   Q) and ranked against its TEST interactions. Peers on the same users: the popularity list of
   the same model (TRAIN history excluded), and the users *trained in* (a model trained on every
   user's TRAIN). The fold-in settings (method, confidence, regularization) are chosen on a
   VALID split made the same way inside the held-out users' TRAIN, then scored once on TEST.
2. **Similar items** (``similar_items`` requests, the trained-in model): the query is each test
   user's last TRAIN item; the list (the user's TRAIN items excluded) is scored against the
   user's TEST items. Peers: popularity, and the user's own recommendations.

NDCG@10 as in BENCHMARKS.md (gain 1/log2(1 + position), ideal DCG over min(10, test items)),
averaged over users with test items; every list goes through :class:`Recommender.answer`, the
code path of ``/invocations``.

    python -m benchmarks.serving_quality
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.common import Table, git_commit, load_ml100k, run_header, write_results
from mfrec.serve.recommender import Recommender
from mfrec.serve.requests import Filters, Request
from mfrec.train.artifact import ModelArtifact, load, save
from mfrec.train.config import TrainConfig
from mfrec.train.interactions import Interactions
from mfrec.train.pipeline import train_model
from mfrec.train.split import temporal_split

K = 10
MODELS = Path("/tmp/mfrec-bench-serving/quality-models")
GRID = [("mean", 0.0, 0.0)] + [("als", c, r) for c in (2.0, 10.0, 40.0) for r in (0.01, 0.1, 1.0)]


def ndcg(lists: list[np.ndarray], relevant: list[set], k: int = K) -> float:
    """Mean NDCG@k of item-index lists against sets of relevant item indices."""
    discounts = 1 / np.log2(np.arange(2, k + 2))
    values = []
    for items, truth in zip(lists, relevant, strict=True):
        if truth:
            gains = np.array([item in truth for item in items[:k]], dtype=float)
            values.append(
                (gains * discounts[: len(gains)]).sum() / discounts[: min(k, len(truth))].sum()
            )
    return float(np.mean(values)) if values else 0.0


def per_user(data: Interactions, users: np.ndarray) -> list[np.ndarray]:
    """Each user's item indices in time (then file) order."""
    order = np.lexsort((np.arange(len(data)), data.timestamps, data.user_idx))
    user_idx, item_idx = data.user_idx[order], data.item_idx[order]
    starts = np.searchsorted(user_idx, users)
    ends = np.searchsorted(user_idx, users, side="right")
    return [item_idx[s:e] for s, e in zip(starts, ends, strict=True)]


def lists(rec: Recommender, requests: list[Request]) -> list[np.ndarray]:
    """Top-K item indices of each answer."""
    return [
        np.array([rec.catalog.index[i] for i in answer.item_ids], dtype=np.int64)
        for answer in rec.answer(requests)
    ]


def train_or_load(data: Interactions, config: TrainConfig, name: str) -> ModelArtifact:
    """A model trained on ``data``, kept under /tmp so that a second run does not retrain.

    The cache key includes the configuration and a digest of the training code, so a change to
    either (new defaults, a new optimizer) trains a new model instead of reusing a stale one.
    """
    key = json.dumps([config.to_dict(), git_commit()["code_sha256"]], sort_keys=True)
    folder = MODELS / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if (folder / "model.json").is_file():
        return load(folder)
    artifact = train_model(data, config, out=io.StringIO()).artifact
    save(artifact, folder)
    return artifact


def fold_in_recommender(artifact, method: str, confidence, regularization) -> Recommender:
    """A CPU Recommender folding histories in with ``method``; the mean fold-in's grid entry
    has no settings (0.0), which become valid placeholders that it ignores."""
    return Recommender(
        artifact,
        "cpu",
        fold_in_method=method,
        default_top_n=K,
        max_top_n=K,
        fold_in_confidence=confidence or 10.0,
        fold_in_regularization=regularization or 0.1,
    )


def fold_in_scores(rec: Recommender, users, histories, truths) -> tuple[float, float]:
    """NDCG@K of fold-in and of popularity (history excluded) for unknown users."""
    ids = [rec.item_ids[h].tolist() for h in histories]
    folded = [
        Request("history", f"new-{u}", history=tuple(h), top_n=K)
        for u, h in zip(users, ids, strict=True)
    ]
    popular = [Request("popular", top_n=K, filters=Filters(exclude_items=tuple(h))) for h in ids]
    return ndcg(lists(rec, folded), truths), ndcg(lists(rec, popular), truths)


def bench_fold_in(data, train, test, held, config, seed) -> tuple[Table, dict]:
    held_in_train = np.isin(train.user_idx, held)
    started = time.perf_counter()
    model_out = train_or_load(train.subset(~held_in_train), config, f"held-out-{seed}")
    model_in = train_or_load(train, config, f"trained-in-{seed}")
    training_seconds = time.perf_counter() - started

    # Choose the fold-in settings on VALID (inside the held-out users' TRAIN).
    fit, valid = temporal_split(train.subset(held_in_train), 0.1)
    fit_histories = per_user(fit, held)
    valid_truth = [set(v.tolist()) for v in per_user(valid, held)]
    choices = {}
    for method, confidence, regularization in GRID:
        rec = fold_in_recommender(model_out, method, confidence, regularization)
        choices[(method, confidence, regularization)] = fold_in_scores(
            rec, held, fit_histories, valid_truth
        )[0]
    best = max(choices, key=choices.get)

    histories = per_user(train, held)
    truth = [set(t.tolist()) for t in per_user(test, held)]
    results = {
        "held_out_users": len(held),
        "train_or_load_seconds": training_seconds,
        "valid_ndcg@10": {f"{m} c={c} r={r}": v for (m, c, r), v in choices.items()},
        "chosen": {"method": best[0], "confidence": best[1], "regularization": best[2]},
    }
    table = Table(
        f"Fold-in: {len(held)} users held out of training, NDCG@10 on TEST",
        ["method", "settings (chosen on VALID)", "NDCG@10"],
    )
    for method in ("als", "mean"):
        settings = max((key for key in choices if key[0] == method), key=choices.get)
        rec = fold_in_recommender(model_out, *settings)
        fold, popular = fold_in_scores(rec, held, histories, truth)
        label = "-" if method == "mean" else f"confidence {settings[1]}, reg {settings[2]}"
        table.rows.append([f"fold-in ({method})", label, round(fold, 4)])
        results[f"fold_in_{method}"] = fold
    results["popularity"] = popular
    trained = Recommender(model_in, "cpu", default_top_n=K, max_top_n=K)
    results["trained_in"] = ndcg(
        lists(trained, [Request("user", str(model_in.user_ids[u]), top_n=K) for u in held]), truth
    )
    table.rows += [
        ["popularity (same model, history excluded)", "-", round(popular, 4)],
        ["the same users trained in", "-", round(results["trained_in"], 4)],
    ]
    table.notes.append(
        f"default TrainConfig, seed {seed}; fold-in grid on VALID: "
        + ", ".join(f"{k}={v:.4f}" for k, v in results["valid_ndcg@10"].items())
    )
    return table, results, model_in


def bench_similar(model, train, test) -> tuple[Table, dict]:
    users = np.unique(test.user_idx)
    histories = per_user(train, users)
    truth = [set(t.tolist()) for t in per_user(test, users)]
    rec = Recommender(model, "cpu", default_top_n=K, max_top_n=K)
    keep = [len(h) > 0 for h in histories]
    users = users[keep]
    histories = [h for h, k in zip(histories, keep, strict=True) if k]
    truth = [t for t, k in zip(truth, keep, strict=True) if k]
    user_ids = [str(model.user_ids[u]) for u in users]
    results = {}
    for label, make in [
        (
            "similar items: embedding cosine",
            lambda u, h: Request(
                "similar_items", u, rec.item_ids[h[-1]], top_n=K, exclude_seen=True
            ),
        ),
        (
            "similar items: co-occurrence",
            lambda u, h: Request(
                "similar_items",
                u,
                rec.item_ids[h[-1]],
                top_n=K,
                exclude_seen=True,
                similarity="cooccurrence",
            ),
        ),
        ("popularity", lambda u, h: Request("popular", u, top_n=K, exclude_seen=True)),
        ("the user's recommendations", lambda u, h: Request("user", u, top_n=K)),
    ]:
        requests = [make(u, h) for u, h in zip(user_ids, histories, strict=True)]
        results[label] = ndcg(lists(rec, requests), truth)
    table = Table(
        f"Similar items to the last TRAIN item: {len(users)} users, NDCG@10 on TEST",
        ["list", "NDCG@10"],
        [[k, round(v, 4)] for k, v in results.items()],
    )
    return table, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    header = run_header("serving-quality", "benchmarks.serving_quality", argv)
    data = load_ml100k()
    train, test = temporal_split(data, 0.1)
    rng = np.random.default_rng(args.seed)
    held = np.sort(rng.choice(data.num_users, size=data.num_users // 10, replace=False))
    config = TrainConfig(device="cpu")
    fold_table, fold_results, model_in = bench_fold_in(data, train, test, held, config, args.seed)
    print(fold_table.to_markdown(), flush=True)
    similar_table, similar_results = bench_similar(model_in, train, test)
    print(similar_table.to_markdown(), flush=True)
    notes = ["MovieLens 100K, every rating an interaction, protocol Q's temporal split"]
    paths = write_results(
        header,
        [fold_table, similar_table],
        {"fold_in": fold_results, "similar_items": similar_results},
        notes,
        args.out_dir,
    )
    print("wrote", *paths)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
