"""Checks on a GPU that ``scripts/gpu-check`` runs beside ``benchmarks.gpu``: two of benchmark T
here, three more in :mod:`benchmarks.gpu_more` (``ials-iteration``, ``processes``, ``sequence``).

- ``phases``: peak device memory per phase of a training job, in the order
  :class:`mfrec.train.phases.TrainingRun` runs them: the fit (trainer on FIT, its epochs),
  validation (:func:`mfrec.train.metrics.evaluate` on VALID), then the refit on all the data
  after the fit's trainer was freed (target: 100M interactions at d=128 on one 24 GB card);
- ``agreement``: the same configuration trained on the CPU and on the GPU (VALID NDCG@10 of
  each, within noise), and the CPU-trained model scored on both devices (largest score
  difference, top-10 overlap).

    python -m benchmarks.gpu_checks phases --size 10m --out result.json
    python -m benchmarks.gpu_checks agreement --out result.json
    python -m benchmarks.gpu_checks agreement --allow-cpu --epochs 1 --out result.json
    python -m benchmarks.gpu_checks ials-iteration --size 10m --factors 64,256 --out result.json
    python -m benchmarks.gpu_checks processes --models ials,sgd --out result.json
    python -m benchmarks.gpu_checks sequence --size 10m --steps 200 --out result.json

``--allow-cpu`` runs on the CPU where there is no GPU (to test this script; memory is then
reported as None).
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

from benchmarks import gpu_more, speed

MORE = {
    "ials-iteration": gpu_more.ials_iteration,
    "processes": gpu_more.processes,
    "sequence": gpu_more.sequence,
}


def _device(allow_cpu: bool):
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    if allow_cpu:
        return torch.device("cpu")
    raise SystemExit("benchmarks.gpu_checks needs a CUDA GPU (or --allow-cpu to test it)")


def _peak_mib(device, reset: bool = True) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) / 2**20
    if reset:
        torch.cuda.reset_peak_memory_stats(device)
    return peak


def phases(args) -> dict:
    """Peak device memory (MiB) of the fit, validation and refit phases."""
    from mfrec.train.config import TrainConfig
    from mfrec.train.interactions import Interactions
    from mfrec.train.loop import Trainer
    from mfrec.train.metrics import evaluate

    device = _device(args.allow_cpu)
    fit, valid = speed.load_prepared(speed.prepare(args.size, args))
    hyperparameters = {"embedding_dim": str(args.embedding_dim), "model": "sgd"}
    config = TrainConfig.from_hyperparameters(hyperparameters)
    result = {"size": args.size, "device": str(device), "fit_interactions": len(fit)}
    _peak_mib(device)
    started = time.perf_counter()
    trainer = Trainer(fit, config, device, horizon_epochs=config.num_epochs)
    for _ in range(args.epochs):
        trainer.run_epoch()
    result["fit_seconds"] = time.perf_counter() - started
    result["fit_peak_mib"] = _peak_mib(device)
    started = time.perf_counter()
    result["valid_ndcg@10"] = evaluate(trainer.model, fit, valid, k=10)["ndcg@10"]
    result["validation_seconds"] = time.perf_counter() - started
    result["validation_peak_mib"] = _peak_mib(device)
    trainer = None  # as the refit does: free the fit's trainer first
    gc.collect()
    # FIT + VALID (VALID is cut to --eval-users users: nearly all the data at these sizes).
    everything = Interactions(
        user_idx=_concat(fit.user_idx, valid.user_idx),
        item_idx=_concat(fit.item_idx, valid.item_idx),
        user_ids=fit.user_ids,
        item_ids=fit.item_ids,
    )
    started = time.perf_counter()
    trainer = Trainer(everything, config, device, horizon_epochs=config.num_epochs)
    trainer.run_epoch()
    result["refit_epoch_seconds"] = time.perf_counter() - started
    result["refit_peak_mib"] = _peak_mib(device)
    return result


def _concat(first, second):
    import numpy as np

    return np.concatenate([first, second])


def agreement(args) -> dict:
    """VALID NDCG@10 trained on each device, and one model scored on both."""
    import torch

    from benchmarks import quality
    from mfrec.train.config import TrainConfig
    from mfrec.train.loop import Trainer
    from mfrec.train.metrics import evaluate
    from mfrec.train.model import MatrixFactorization

    device = _device(args.allow_cpu)
    fit, valid = speed.fit_valid(quality.load_dataset("synthetic"), eval_users=10**9)
    config = TrainConfig.from_hyperparameters(
        {"model": "sgd", "batch_size": "1024", "recency_min_weight": "1"}
    )
    found = {}
    for name, where in (("cpu", torch.device("cpu")), ("device", device)):
        trainer = Trainer(fit, config, where, horizon_epochs=args.epochs)
        history = []
        for _ in range(args.epochs):
            trainer.run_epoch()
            history.append(evaluate(trainer.model, fit, valid, k=10)["ndcg@10"])
        found[name] = {"best_valid_ndcg@10": max(history), "history": history}
        if name == "cpu":
            arrays = trainer.model.arrays()
    users = torch.arange(min(fit.num_users, 500))
    on_cpu = MatrixFactorization.from_arrays(arrays, "cpu").score_users(users)
    on_device = MatrixFactorization.from_arrays(arrays, device).score_users(users.to(device))
    on_device = on_device.cpu()
    top_cpu = on_cpu.topk(10, dim=1).indices
    top_device = on_device.topk(10, dim=1).indices
    overlap = (top_cpu[:, :, None] == top_device[:, None, :]).any(dim=2).float().mean()
    return {
        "device": str(device),
        "epochs": args.epochs,
        "trained": found,
        "ndcg_ratio_device_to_cpu": found["device"]["best_valid_ndcg@10"]
        / max(found["cpu"]["best_valid_ndcg@10"], 1e-12),
        "max_abs_score_difference": float((on_cpu - on_device).abs().max()),
        "top10_overlap": float(overlap),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_checks", description=__doc__)
    parser.add_argument("check", choices=("phases", "agreement", *MORE))
    parser.add_argument("--size", default="10m", help="synthetic size (not agreement, processes)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--embedding-dim", type=int, default=128)
    parser.add_argument("--synth-dir", default=str(speed.DATA_DIR))
    parser.add_argument("--eval-users", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--factors", default="64,256", help="ials-iteration: comma-separated")
    parser.add_argument("--iterations", type=int, default=5, help="ials-iteration: timed")
    parser.add_argument("--steps", type=int, default=200, help="sequence: timed steps")
    parser.add_argument("--warmup-steps", type=int, default=10, help="sequence: untimed steps")
    parser.add_argument("--models", default="ials,sgd", help="processes: comma-separated")
    parser.add_argument("--data", help="processes: CSV (default: the packaged synthetic data)")
    parser.add_argument("--run-timeout", type=float, default=120, help="processes: per run (s)")
    parser.add_argument("--allow-cpu", action="store_true")
    parser.add_argument("--out", required=True, help="JSON result file")
    args = parser.parse_args(argv)
    args.data_dir = None
    if args.check in MORE:
        result = MORE[args.check](args, _device(args.allow_cpu))
    else:
        result = phases(args) if args.check == "phases" else agreement(args)
    Path(args.out).write_text(json.dumps(result, indent=1, default=float))
    print(json.dumps(result, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
