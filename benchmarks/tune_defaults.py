"""Choose mfrec's default hyperparameters on MovieLens 100K with the seed protocol.

Protocol Q of ``../shared/BENCHMARKS.md``: per user, the last 10% by time is TEST; tuning uses
only a FIT/VALID split of TRAIN made the same way; ranking excludes the user's training items;
NDCG@10 is the headline.

    # grid search on FIT/VALID (each value list is crossed with the others)
    .venv/bin/python benchmarks/tune_defaults.py grid --set loss=softmax,bpr --set l2=0,1e-4
    # the defaults, exactly as `mfrec train` runs them: train_model on TRAIN, scored on TEST
    .venv/bin/python benchmarks/tune_defaults.py protocol [--set key=value ...]

The data folder defaults to ``../shared/data/ml-100k`` beside the checkout (never copied).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import itertools
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mfrec.train.config import TrainConfig
from mfrec.train.interactions import Interactions
from mfrec.train.loop import Trainer
from mfrec.train.metrics import evaluate, evaluate_popularity
from mfrec.train.split import temporal_split

ML100K = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"


def load_ml100k(folder: Path) -> Interactions:
    frame = pd.read_csv(folder / "u.data", sep="\t", names=["user", "item", "rating", "ts"])
    return Interactions.from_ids(frame["user"], frame["item"], timestamps=frame["ts"])


def parse_sets(items: list[str]) -> dict[str, list[str]]:
    grid = {}
    for item in items:
        key, _, values = item.partition("=")
        grid[key] = values.split(",")
    return grid


def curve(fit: Interactions, valid: Interactions, config: TrainConfig) -> dict:
    """Train on FIT for num_epochs, evaluating VALID after each epoch."""
    trainer = Trainer(fit, config, torch.device("cpu"), horizon_epochs=config.num_epochs)
    ndcgs, seconds = [], 0.0
    for _ in range(config.num_epochs):
        start = time.perf_counter()
        trainer.run_epoch()
        seconds += time.perf_counter() - start
        ndcgs.append(evaluate(trainer.model, fit, valid)["ndcg@10"])
    best = int(np.argmax(ndcgs))
    return {
        "best_ndcg@10": round(ndcgs[best], 4),
        "best_epoch": best + 1,
        "last_ndcg@10": round(ndcgs[-1], 4),
        "epoch_seconds": round(seconds / config.num_epochs, 3),
        "curve": [round(x, 4) for x in ndcgs],
    }


def run_grid(data: Interactions, grid: dict[str, list[str]], show_curve: bool) -> None:
    train, _ = temporal_split(data, 0.1)
    fit, valid = temporal_split(train, 0.1)
    print("popularity VALID:", round(evaluate_popularity(fit, valid)["ndcg@10"], 4), flush=True)
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        overrides = dict(zip(keys, values, strict=True))
        config = TrainConfig.from_hyperparameters(overrides)
        result = curve(fit, valid, config)
        if not show_curve:
            result.pop("curve")
        print(json.dumps({**overrides, **result}), flush=True)


def run_protocol(data: Interactions, overrides: dict[str, str]) -> None:
    from mfrec.train.pipeline import train_model

    train, test = temporal_split(data, 0.1)
    config = TrainConfig.from_hyperparameters(overrides)
    start = time.perf_counter()
    result = train_model(train, config, out=io.StringIO())
    seconds = time.perf_counter() - start
    from mfrec.train.model import MatrixFactorization

    model = MatrixFactorization.from_arrays(result.artifact)
    test_metrics = evaluate(model, train, test)
    pop = evaluate_popularity(train, test)
    report = {
        "config": {k: v for k, v in dataclasses.asdict(config).items() if k in overrides},
        "best_epoch": result.metrics.get("best_epoch"),
        "VALID_ndcg@10": round(result.metrics["mfrec"]["ndcg@10"], 4),
        "TEST_ndcg@10": round(test_metrics["ndcg@10"], 4),
        "TEST_popularity_ndcg@10": round(pop["ndcg@10"], 4),
        "TEST": {k: round(v, 4) for k, v in test_metrics.items()},
        "seconds": round(seconds, 1),
    }
    print(json.dumps(report), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["grid", "protocol"])
    parser.add_argument("--data", type=Path, default=ML100K)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2")
    parser.add_argument("--curve", action="store_true", help="print VALID NDCG@10 per epoch")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_ml100k(args.data)
    grid = parse_sets(args.set)
    if args.mode == "grid":
        run_grid(data, grid, args.curve)
    else:
        run_protocol(data, {k: v[0] for k, v in grid.items()})


if __name__ == "__main__":
    main()
