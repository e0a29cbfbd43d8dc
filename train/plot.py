"""The training-curve plot: loss and validation NDCG@10 per epoch, mfrec against popularity."""

from __future__ import annotations

import os
from pathlib import Path


def plot_history(history: list[dict], path: str | os.PathLike) -> Path:
    """Save a PNG of :attr:`TrainResult.history` to ``path``.

    Left panel: training loss per epoch (fit and refit phases as separate lines). Right panel:
    validation NDCG@10 of mfrec and of the popularity baseline per evaluated epoch (empty, with
    a note, when the run had no validation data).

    Parameters
    ----------
    history : list of dict
        One dict per epoch with ``epoch``, ``train_loss``, optionally ``phase``,
        ``val_ndcg@10`` and ``pop_ndcg@10``.
    path : path
        The PNG to write (its folder is created).
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on training hosts
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    loss_axes, ndcg_axes = figure.subplots(1, 2)
    for phase in ("fit", "refit"):
        rows = [row for row in history if row.get("phase", "fit") == phase]
        if rows:
            loss_axes.plot(
                [row["epoch"] for row in rows],
                [row["train_loss"] for row in rows],
                marker=".",
                label=f"{phase} loss",
            )
    loss_axes.set(xlabel="epoch", ylabel="training loss", title="Training loss")
    loss_axes.legend()
    evaluated = [row for row in history if "val_ndcg@10" in row]
    if evaluated:
        epochs = [row["epoch"] for row in evaluated]
        ndcg_axes.plot(epochs, [row["val_ndcg@10"] for row in evaluated], marker=".", label="mfrec")
        ndcg_axes.plot(
            epochs, [row["pop_ndcg@10"] for row in evaluated], linestyle="--", label="popularity"
        )
        ndcg_axes.legend()
    else:
        ndcg_axes.text(0.5, 0.5, "no validation data", ha="center", va="center")
    ndcg_axes.set(xlabel="epoch", ylabel="NDCG@10", title="Validation NDCG@10")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
