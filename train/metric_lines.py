"""The metric lines a training job prints, and the SageMaker regexes that read them back.

Every epoch prints one flushed line of ``name=value;`` pairs, e.g. ``epoch=3; train_loss=4.1230;
val_ndcg@10=0.071200; ...; pop_ndcg@10=0.063900; eval_seconds=0.21; epoch_seconds=1.23;``
(refit epochs carry ``phase=refit;`` and no validation values), then a final line
``final: val_ndcg@10=...; ...; best_epoch=12; epochs_trained=12;``.
:data:`METRIC_DEFINITIONS` parses them.

This module imports nothing heavy (no torch), so the CLI and :mod:`mfrec.sagemaker` can read
the regexes cheaply.
"""

from __future__ import annotations

CUTOFFS = {"precision": (5, 10, 25), "recall": (10,), "mrr": (25,), "ndcg": (5, 10, 25)}
METRIC_NAMES = [f"{name}@{k}" for name, ks in CUTOFFS.items() for k in ks] + ["coverage"]
# The order of printed lines and tables: the headline metric first, then the others in order.
LINE_ORDER = ["ndcg@10"] + [name for name in METRIC_NAMES if name != "ndcg@10"]


def format_line(values: dict, prefix: str = "") -> str:
    """``prefix`` then ``name=value;`` pairs joined by spaces; floats to 6 significant digits
    (seconds to 3 decimals), so every value matches ``[-+]?[0-9]*\\.?[0-9]+([eE][-+]?[0-9]+)?``.
    """
    parts = []
    for name, value in values.items():
        if isinstance(value, float):
            text = f"{value:.3f}" if name.endswith("seconds") else f"{value:.6g}"
        else:
            text = str(value)
        parts.append(f"{name}={text};")
    return prefix + " ".join(parts)


_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
METRIC_DEFINITIONS = (
    [
        {"Name": "train:loss", "Regex": rf"\bepoch=\d+;.*? train_loss={_NUMBER};"},
        {"Name": "train:epoch_seconds", "Regex": rf"\bepoch=\d+;.*? epoch_seconds={_NUMBER};"},
        {"Name": "validation:seconds", "Regex": rf"\bepoch=\d+;.*? eval_seconds={_NUMBER};"},
        {"Name": "popularity:ndcg@10", "Regex": rf"\bepoch=\d+;.*? pop_ndcg@10={_NUMBER};"},
    ]
    + [
        {"Name": f"validation:{name}", "Regex": rf"\bepoch=\d+;.*? val_{name}={_NUMBER};"}
        for name in METRIC_NAMES
    ]
    + [
        {"Name": f"final:{side}:{name}", "Regex": rf"final: .*?\b{prefix}_{name}={_NUMBER};"}
        for side, prefix in (("validation", "val"), ("popularity", "pop"))
        for name in METRIC_NAMES
    ]
)
"""SageMaker ``MetricDefinitions`` for the progress lines (31 of the allowed 40). For tuning
jobs use ``final:validation:ndcg@10``: it is printed once, after training."""
