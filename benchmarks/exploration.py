"""Exploration on MovieLens 100K (issue 15, item 5): what ``explorationWeight`` costs in NDCG@10
and what it gains in cold items shown, on the seed protocol's split.

A model with mfrec's default hyperparameters is trained on TRAIN (each user's first 90% of
interactions in time, protocol Q; the model of benchmarks/serving_quality.py, cached in /tmp)
with the artifact extras a training job writes (``seen_timestamps``: item ages from first
interactions). Every user with TEST items asks for 10 items (training items excluded) through
:meth:`Recommender.answer`, at each weight and cut-off, with ``exploration_seed`` = the user's
index, so a run is reproducible. Per setting:

- NDCG@10 as in BENCHMARKS.md (gain 1/log2(1 + position), ideal DCG over min(10, test items));
- cold share: the share of recommended slots holding cold items (the server's rule: at most the
  median training interactions; with the cut-off, also at most that many days old);
- cold coverage: distinct cold items recommended to anyone / cold items in the catalogue;
- cold hits: test interactions with cold items found in the lists, per user.

    python -m benchmarks.exploration
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from benchmarks.common import Table, load_ml100k, run_header, write_results
from benchmarks.serving_quality import K, ndcg, train_or_load
from mfrec.serve.exploration import Exploration, Explorer
from mfrec.serve.recommender import Recommender
from mfrec.serve.requests import Request
from mfrec.train.config import TrainConfig
from mfrec.train.item_features import item_extras
from mfrec.train.split import temporal_split

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)
NO_CUTOFF = 1e6  # days: every rarely seen item qualifies


def evaluate(rec: Recommender, users, truth, weight: float, cutoff: float) -> dict:
    """NDCG@10 and the cold-item figures of one setting (see the module docstring)."""
    requests = [
        Request(user_id=str(rec.artifact.user_ids[u]), top_n=K,
                exploration=Exploration(weight, cutoff, int(u)))
        for u in users
    ]  # fmt: skip
    lists = [
        np.array([rec.catalog.index[i] for i in answer.item_ids], dtype=np.int64)
        for answer in rec.answer_together(requests)
    ]
    cold = np.zeros(rec.num_items, dtype=bool)
    cold[Explorer(rec.artifact, Exploration(0.0)).pool(cutoff)] = True
    shown = np.concatenate(lists)
    hits = [sum(cold[i] and i in t for i in items) for items, t in zip(lists, truth, strict=True)]
    return {
        "ndcg@10": ndcg(lists, truth),
        "cold_share": float(cold[shown].mean()),
        "cold_coverage": len(np.unique(shown[cold[shown]])) / max(1, int(cold.sum())),
        "cold_items": int(cold.sum()),
        "cold_hits_per_user": float(np.mean(hits)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default=",".join(map(str, WEIGHTS)))
    parser.add_argument("--cutoffs", default=f"30,{NO_CUTOFF:g}", help="days, comma-separated")
    parser.add_argument("--out-dir", help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    weights = [float(w) for w in args.weights.split(",")]
    cutoffs = [float(c) for c in args.cutoffs.split(",")]
    header = run_header("exploration", "benchmarks.exploration", argv)
    data = load_ml100k()
    train, test = temporal_split(data, 0.1)
    artifact = train_or_load(train, TrainConfig(device="cpu"), "trained-in-0")
    artifact = dataclasses.replace(artifact, extra={**artifact.extra, **item_extras(train)})
    rec = Recommender(artifact, "cpu", default_top_n=K, max_top_n=K, batch_wait_seconds=0)
    users = np.unique(test.user_idx)
    order = np.argsort(test.user_idx, kind="stable")
    bounds = (
        np.searchsorted(test.user_idx[order], users),
        np.searchsorted(test.user_idx[order], users, side="right"),
    )
    truth = [set(test.item_idx[order][s:e].tolist()) for s, e in zip(*bounds, strict=True)]
    table = Table(
        f"Exploration on MovieLens 100K: {len(users)} users, top 10, NDCG@10 on TEST",
        ["cut-off days", "weight", "NDCG@10", "vs weight 0", "cold share", "cold coverage",
         "cold items", "cold hits/user"],
    )  # fmt: skip
    results = {}
    for cutoff in cutoffs:
        base = None
        for weight in weights:
            found = evaluate(rec, users, truth, weight, cutoff)
            base = found["ndcg@10"] if base is None else base
            results[f"cutoff={cutoff:g} weight={weight:g}"] = found
            table.rows.append([
                "none" if cutoff >= NO_CUTOFF else f"{cutoff:g}", f"{weight:g}",
                round(found["ndcg@10"], 4), f"{found['ndcg@10'] / base:.3f}x",
                f"{found['cold_share']:.1%}", f"{found['cold_coverage']:.1%}",
                found["cold_items"], round(found["cold_hits_per_user"], 4),
            ])  # fmt: skip
            print(table.rows[-1], flush=True)
    table.notes += [
        "cold = at most the median training interactions per item (the server's rule); with a "
        "cut-off, also first seen in TRAIN at most that many days before TRAIN's newest "
        "interaction; 'none' = no age limit",
        "exploration_seed = the user's index; the ratio column is against weight 0 of the "
        "same cut-off (weight 0 is the model's own list)",
    ]
    notes = ["MovieLens 100K, every rating an interaction, protocol Q's temporal split"]
    paths = write_results(header, [table], results, notes, args.out_dir)
    print(table.to_markdown())
    print("wrote", *paths)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
