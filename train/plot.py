"""The training-curve plot: loss and validation NDCG@10 per epoch, mfrec against popularity."""

from __future__ import annotations

import os
from pathlib import Path

GRID = {"color": "0.85", "linewidth": 0.6}  # light, behind the lines


def plot_history(
    history: list[dict],
    path: str | os.PathLike,
    best_epoch: int | None = None,
    model: str | None = None,
) -> Path:
    """Save a PNG of :attr:`TrainResult.history` to ``path`` (see :func:`training_figure`).

    Parameters
    ----------
    history : list of dict
        One dict per epoch with ``epoch``, ``train_loss``, optionally ``model``, ``phase``,
        ``val_ndcg@10`` and ``pop_ndcg@10``.
    path : path
        The PNG to write (its folder is created).
    best_epoch : int, optional
        The chosen epoch (``metrics["best_epoch"]``), marked on both panels.
    model : str, optional
        The chosen model (``metrics["model"]``) when the history holds several.
    """
    figure = training_figure(history, best_epoch, model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def training_figure(history: list[dict], best_epoch: int | None = None, model: str | None = None):
    """The figure behind :func:`plot_history`, a :class:`matplotlib.figure.Figure`.

    Left panel: training loss per epoch, one line per model and phase (fit, refit). Right panel:
    validation NDCG@10 per evaluated epoch, one line per model, and the popularity baseline
    (empty, with a note, when the run had no validation data). The chosen epoch is a dotted
    vertical line on both panels, and a ring on the chosen model's NDCG curve. Both panels have
    a light grid.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on training hosts
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(10, 4), layout="constrained")
    loss_axes, ndcg_axes = figure.subplots(1, 2)
    models = list(dict.fromkeys(row.get("model", "") for row in history))
    for name in models:
        for phase in ("fit", "refit"):
            rows = [
                r for r in history if (r.get("model", ""), r.get("phase", "fit")) == (name, phase)
            ]
            if rows:
                loss_axes.plot(
                    [row["epoch"] for row in rows],
                    [row["train_loss"] for row in rows],
                    marker=".",
                    label=" ".join(filter(None, (name, phase, "loss"))),
                )
    loss_axes.set(xlabel="epoch", ylabel="training loss", title="Training loss")
    evaluated = [row for row in history if "val_ndcg@10" in row]
    chosen = model if model in models else models[-1] if models else ""
    for name in models:
        rows = [row for row in evaluated if row.get("model", "") == name]
        if rows:
            ndcg_axes.plot(
                [row["epoch"] for row in rows],
                [row["val_ndcg@10"] for row in rows],
                marker=".",
                label=name or "mfrec",
            )
            best = [row for row in rows if row["epoch"] == best_epoch]
            if best and name == chosen:
                ndcg_axes.plot(
                    [best_epoch],
                    [best[0]["val_ndcg@10"]],
                    marker="o",
                    markersize=11,
                    markerfacecolor="none",
                    color="black",
                    linestyle="none",
                    label=f"chosen: epoch {best_epoch}",
                )
    if evaluated:
        baseline = {row["epoch"]: row["pop_ndcg@10"] for row in evaluated if "pop_ndcg@10" in row}
        ndcg_axes.plot(
            list(baseline), list(baseline.values()), linestyle="--", color="0.4", label="popularity"
        )
        ndcg_axes.legend()
    else:
        ndcg_axes.text(0.5, 0.5, "no validation data", ha="center", va="center")
    ndcg_axes.set(xlabel="epoch", ylabel="NDCG@10", title="Validation NDCG@10")
    for axes in (loss_axes, ndcg_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        if best_epoch is not None:
            axes.axvline(best_epoch, color="0.3", linestyle=":", linewidth=1, label="_chosen")
        axes.grid(True, **GRID)
        axes.set_axisbelow(True)
    if best_epoch is not None:
        loss_axes.plot([], [], color="0.3", linestyle=":", label=f"chosen epoch {best_epoch}")
    if loss_axes.lines:
        loss_axes.legend()
    return figure
