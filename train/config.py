"""The training configuration: one frozen dataclass, parsed once from SageMaker's strings.

The defaults were chosen by measurement on MovieLens 100K with the seed protocol (see
``benchmarks/NOTES.md``), so a job with no hyperparameters at all trains a good model.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from mfrec.train.errors import ConfigError

MODELS = ("auto", "sgd", "ials", "sequence")
LOSSES = ("softmax", "bpr", "hinge", "adaptive_hinge", "pointwise")
IALS_SOLVERS = ("cholesky", "cg")
SAMPLINGS = ("uniform", "popularity")
SCHEDULES = ("constant", "cosine")
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")  # mfrec.train.device reads it too
# Negatives per positive when num_negatives is left at "auto": the softmax shares one large set
# of negatives across the batch (cheap: one matrix product); the pairwise losses draw their own
# per positive, and the max-over-negatives of adaptive_hinge needs a few to find a hard one.
AUTO_NEGATIVES = {"softmax": 256, "adaptive_hinge": 8, "bpr": 4, "hinge": 4, "pointwise": 4}
# The batch the defaults were tuned at, and batch_size=auto per device type (resolve_batch_size):
# the CPU's best measured batch, and a large one on a GPU, whose step is launch-bound at 1024.
REFERENCE_BATCH = 1024
AUTO_BATCH = {"cpu": 1024, "cuda": 16384}
# batch_size=auto of the sequence model (target positions per step): on the CPU 4096, whose
# large-batch rule (512 negatives, a schedule and patience twice as long) gave the smoothest
# VALID curve on MovieLens 100K (benchmarks/NOTES.md, "The sequence model").
AUTO_SEQUENCE_BATCH = {"cpu": 4096, "cuda": 16384}
# embedding_dim when not given: the sequence model's blocks overfit MovieLens 100K at 128
# (VALID NDCG@10 0.157 against 0.176 at 64; benchmarks/NOTES.md, "The sequence model").
DEFAULT_EMBEDDING_DIM = {"sgd": 128, "ials": 128, "auto": 128, "sequence": 64}
# Hyperparameters whose "auto" (None) is resolved later: num_negatives by the loss and the
# batch size (TrainConfig.negatives); recency_min_weight, unobserved_weight and regularization
# by probes on the validation data (mfrec.train.auto); batch_size by the device
# (resolve_batch_size).
_AUTO = (
    "num_negatives",
    "recency_min_weight",
    "unobserved_weight",
    "regularization",
    "batch_size",
    "embedding_dim",  # by the model (DEFAULT_EMBEDDING_DIM), in __post_init__
)
BOOLEAN_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
IGNORED_PREFIXES = ("_", "sagemaker_")  # tuning jobs and AWS's toolkits add such keys


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of the model and its training.

    ``num_epochs`` is the maximum: with a validation set, training stops early when validation
    NDCG@10 has not improved for ``early_stopping_patience`` evaluations (0 disables early
    stopping), and with the automatic hold-out and ``refit`` the model is then retrained on all
    the data for the best number of epochs. ``num_negatives=None`` means "auto" (see
    :data:`AUTO_NEGATIVES`). ``l2`` multiplies the mean squared norm of the embeddings used in
    each batch (users, positive items); ``negative_alpha`` is the exponent of the popularity
    sampler (probability proportional to ``(count + 1) ** negative_alpha``).
    ``recency_min_weight`` weights each user's interactions linearly by recency, from about
    this value for the user's oldest to 1 for the newest (1 disables it; see
    :func:`mfrec.train.recency.recency_weights`); ``None`` means "auto": :mod:`mfrec.train.auto`
    chooses 0 or 1 by a short probe on the validation data (0 without any).

    ``model`` is ``sgd`` (the embeddings trained by SGD on ``loss`` with sampled negatives),
    ``ials`` (implicit alternating least squares, :mod:`mfrec.train.ials`: one epoch is one
    iteration, and ``unobserved_weight``, ``regularization``, ``ials_solver`` and ``cg_steps``
    are its own) or ``auto``: :mod:`mfrec.train.auto` fits both on the validation split and keeps
    the better (``sgd`` without validation data). Both are the same model family (user and item
    embeddings, dot-product scores) and give the same artifact. With ``model=auto``, the second
    candidate (SGD) may take at most ``search_time_factor`` times the seconds the first (iALS)
    took, probes and fit, and at least a minute (0: no limit; :mod:`mfrec.train.search`).
    ``batch_size=None`` means "auto": :data:`AUTO_BATCH` for the device type
    (:func:`resolve_batch_size`); beyond :data:`REFERENCE_BATCH` the softmax's automatic
    negatives follow the batch size (:attr:`negatives`).
    """

    model: str = "auto"
    embedding_dim: int | None = None  # DEFAULT_EMBEDDING_DIM by model, set in __post_init__
    num_epochs: int = 15
    batch_size: int | None = None
    learning_rate: float = 0.01
    loss: str = "softmax"
    num_negatives: int | None = None
    negative_sampling: str = "popularity"
    negative_alpha: float = 0.75
    l2: float = 0.06
    recency_min_weight: float | None = None
    lr_schedule: str = "cosine"
    warmup_epochs: int = 0
    user_bias: bool = False
    seed: int = 42
    device: str = "auto"
    validation_fraction: float = 0.1
    early_stopping_patience: int = 5
    eval_every: int = 1
    refit: bool = True
    unobserved_weight: float | None = None
    regularization: float | None = None
    ials_solver: str = "cg"
    cg_steps: int = 3
    search_time_factor: float = 1.0
    num_blocks: int = 2
    num_heads: int = 2
    max_history: int = 50
    dropout: float = 0.5
    next_items: int = 1
    # model=sequence: a per-user vector added to the sequence's output. On by default: it
    # raised TEST NDCG@10 on 4 of the panel's 5 members (benchmarks/NOTES.md, "Session 7").
    blend_user: bool = True

    def __post_init__(self) -> None:
        if self.embedding_dim is None:  # not given: the model's own default
            dim = DEFAULT_EMBEDDING_DIM.get(self.model, DEFAULT_EMBEDDING_DIM["sgd"])
            object.__setattr__(self, "embedding_dim", dim)
        for name, (check, allowed) in _RULES.items():
            value = getattr(self, name)
            if value is None and name in _AUTO:
                continue
            if _KINDS[name] is int and not isinstance(value, int):
                raise ConfigError(f"{name}={value!r} is not a whole number; allowed: {allowed}")
            if not check(value):
                raise ConfigError(f"{name}={value!r} is out of range; allowed: {allowed}")
        if self.model == "sequence" and self.embedding_dim % self.num_heads:
            raise ConfigError(
                f"embedding_dim={self.embedding_dim} is not a multiple of num_heads="
                f"{self.num_heads}; the sequence model splits each vector across its heads: "
                "choose num_heads dividing embedding_dim (e.g. 1, 2 or 4)"
            )
        if self.warmup_epochs > self.num_epochs:
            raise ConfigError(
                f"warmup_epochs={self.warmup_epochs} exceeds num_epochs={self.num_epochs}; "
                "lower warmup_epochs or raise num_epochs"
            )

    def check_catalogue(self, num_items: int) -> None:
        """Refuse an explicit ``num_negatives`` larger than the catalogue (``num_items``): more
        negatives than items only redraws the same items, at a cost that grows with the value.

        Raises
        ------
        ConfigError
            Naming the value, the catalogue size and the allowed range.
        """
        if self.num_negatives is None or self.model == "ials" or self.num_negatives <= num_items:
            return
        raise ConfigError(
            f"num_negatives={self.num_negatives} is out of range for this data's {num_items:,} "
            f"items; allowed: auto or integers 1 to {num_items} (the number of items)"
        )

    @property
    def negatives(self) -> int:
        """``num_negatives`` with "auto" resolved for the chosen loss and batch size: the
        softmax's shared negatives grow as the square root of the batch beyond
        :data:`REFERENCE_BATCH` (256 at 1024, 1024 at 16384: the large-batch rule of
        ``benchmarks/NOTES.md``)."""
        if self.num_negatives is not None:
            return self.num_negatives
        negatives = AUTO_NEGATIVES[self.loss]
        if self.loss == "softmax" and (self.batch_size or 0) > REFERENCE_BATCH:
            negatives = round(negatives * math.sqrt(self.batch_size / REFERENCE_BATCH))
        return negatives

    @property
    def epochs(self) -> int:
        """``num_epochs`` with the large-batch rule: ``num_epochs`` counts epochs at
        :data:`REFERENCE_BATCH`; beyond it a fit runs ``num_epochs * sqrt(batch_size / 1024)``
        epochs (60 at 16384), the length of its cosine schedule too, because a large batch takes
        fewer steps per epoch (``benchmarks/NOTES.md``, "Large batches")."""
        if (self.batch_size or 0) <= REFERENCE_BATCH:
            return self.num_epochs
        return round(self.num_epochs * math.sqrt(self.batch_size / REFERENCE_BATCH))

    @property
    def patience(self) -> int:
        """``early_stopping_patience`` with the large-batch rule: evaluations at
        :data:`REFERENCE_BATCH`, times ``sqrt(batch_size / 1024)`` beyond it (20 at 16384): a
        large-batch fit first rises to about the popularity baseline, dips for some epochs,
        then climbs past it (``benchmarks/NOTES.md``), and must not be stopped in the dip."""
        if (self.batch_size or 0) <= REFERENCE_BATCH:
            return self.early_stopping_patience
        scale = math.sqrt(self.batch_size / REFERENCE_BATCH)
        return round(self.early_stopping_patience * scale)

    def to_dict(self) -> dict:
        """Plain JSON-able values, ``num_negatives`` resolved (saved in the artifact); an
        unresolved ``recency_min_weight``, ``unobserved_weight`` or ``regularization`` is
        ``"auto"`` (a trained model's are numbers)."""
        values = dataclasses.asdict(self)
        values["num_negatives"] = self.negatives
        for name in _AUTO[1:]:
            if values[name] is None:
                values[name] = "auto"
        return values

    @classmethod
    def hyperparameter_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_hyperparameters(
        cls, mapping: Mapping[str, str], ignore: Iterable[str] = ()
    ) -> TrainConfig:
        """Parse SageMaker's string hyperparameters (``hyperparameters.json``).

        Keys in ``ignore`` (options handled elsewhere, e.g. by the data import) and keys
        starting with ``_`` or ``sagemaker_`` (added by tuning jobs and the SDK) are skipped.
        Booleans accept ``true/false/1/0/yes/no`` in any case; ``num_negatives`` accepts
        ``auto``.

        Raises
        ------
        ConfigError
            An unknown key (the message lists the valid names), a value that does not parse,
            or one out of range (the message gives the allowed range or values).
        """
        ignore = set(ignore)
        fields = {f.name for f in dataclasses.fields(cls)}
        check_hyperparameter_names(mapping, fields | ignore)
        values = {
            key: _parse(key, str(raw).strip())
            for key, raw in mapping.items()
            if key in fields and key not in ignore
        }
        return cls(**values)


def resolve_batch_size(config: TrainConfig, device_type: str) -> TrainConfig:
    """``config`` with ``batch_size=auto`` resolved for a device type ("cpu" or "cuda"):
    :data:`AUTO_BATCH` (:data:`AUTO_SEQUENCE_BATCH` for ``model=sequence``). An explicit batch
    size is kept."""
    if config.batch_size is not None:
        return config
    table = AUTO_SEQUENCE_BATCH if config.model == "sequence" else AUTO_BATCH
    return dataclasses.replace(config, batch_size=table.get(device_type, REFERENCE_BATCH))


def parse_bool(text) -> bool | None:
    """``true/false/1/0/yes/no`` in any case (and Python booleans) as a bool; None otherwise,
    for the caller to raise its own error."""
    if isinstance(text, bool):
        return text
    return BOOLEAN_WORDS.get(str(text).strip().lower())


def check_hyperparameter_names(hyperparameters: Mapping[str, str], valid: set[str]) -> None:
    """Raise ConfigError for a key that is neither valid nor ``_*``/``sagemaker_*``; the message
    suggests the closest valid name and lists them all."""
    unknown = sorted(
        key for key in hyperparameters if key not in valid and not key.startswith(IGNORED_PREFIXES)
    )
    if not unknown:
        return
    named = []
    for key in unknown:
        close = difflib.get_close_matches(key, valid, n=1)
        named.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    raise ConfigError(
        f"unknown hyperparameter {', '.join(named)}: remove it or use one of "
        f"{', '.join(sorted(valid))} (keys starting with '_' or 'sagemaker_' are ignored)"
    )


def _parse(name: str, text: str):
    kind = _KINDS[name]
    if kind is bool:
        if (value := parse_bool(text)) is None:
            raise ConfigError(f"{name}={text!r} is not a boolean; use true or false")
        return value
    if name in _AUTO and text.lower() == "auto":
        return None
    if kind is str:
        return text.lower()
    try:
        number = float(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a number; allowed: {_RULES[name][1]}") from None
    if kind is int:
        if not number.is_integer():
            raise ConfigError(f"{name}={text!r} is not a whole number; allowed: {_RULES[name][1]}")
        return int(number)
    return number


def _between(low: float, high: float, open_low: bool = False) -> Callable:
    def check(value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return (low < value if open_low else low <= value) and value <= high

    return check


def _one_of(options: Iterable[str]) -> Callable:
    options = tuple(options)
    return lambda value: value in options


_RULES: dict[str, tuple[Callable, str]] = {
    "embedding_dim": (_between(1, 4096), "auto or integers 1 to 4096"),
    "num_epochs": (_between(1, 100_000), "integers 1 to 100000"),
    "batch_size": (_between(1, 1 << 24), "auto or integers 1 to 16777216"),
    "learning_rate": (_between(0, 10, open_low=True), "numbers > 0 and <= 10"),
    "loss": (_one_of(LOSSES), ", ".join(LOSSES)),
    "num_negatives": (_between(1, 1 << 20), "auto or integers 1 to 1048576"),
    "negative_sampling": (_one_of(SAMPLINGS), ", ".join(SAMPLINGS)),
    "negative_alpha": (_between(0, 2), "numbers 0 to 2"),
    "l2": (_between(0, 100), "numbers 0 to 100"),
    "recency_min_weight": (
        _between(0, 1),
        "auto or numbers 0 to 1 (1: no recency weighting)",
    ),
    "lr_schedule": (_one_of(SCHEDULES), ", ".join(SCHEDULES)),
    "warmup_epochs": (_between(0, 100_000), "integers 0 to num_epochs"),
    "user_bias": (lambda v: isinstance(v, bool), "true or false"),
    "seed": (_between(0, 2**63 - 1), "integers 0 to 2**63-1"),
    "device": (
        lambda v: isinstance(v, str) and bool(DEVICE_PATTERN.match(v)),
        "auto, cpu, cuda, cuda:N",
    ),
    "validation_fraction": (_between(0, 0.5), "numbers 0 (no hold-out) to 0.5"),
    "early_stopping_patience": (_between(0, 100_000), "integers 0 (disabled) to 100000"),
    "eval_every": (_between(1, 100_000), "integers 1 to 100000"),
    "refit": (lambda v: isinstance(v, bool), "true or false"),
    "model": (_one_of(MODELS), ", ".join(MODELS)),
    "unobserved_weight": (_between(0, 1e6, open_low=True), "auto or numbers > 0 and <= 1e6"),
    "regularization": (_between(0, 1e6, open_low=True), "auto or numbers > 0 and <= 1e6"),
    "ials_solver": (_one_of(IALS_SOLVERS), ", ".join(IALS_SOLVERS)),
    "cg_steps": (_between(1, 100), "integers 1 to 100"),
    "search_time_factor": (_between(0, 1e6), "numbers 0 (no limit) to 1e6"),
    "num_blocks": (_between(1, 16), "integers 1 to 16"),
    "num_heads": (_between(1, 64), "integers 1 to 64 that divide embedding_dim"),
    "max_history": (_between(2, 4096), "integers 2 to 4096"),
    "dropout": (_between(0, 0.9), "numbers 0 to 0.9"),
    "next_items": (_between(1, 4096), "integers 1 to 4096"),
    "blend_user": (lambda v: isinstance(v, bool), "true or false"),
}
_KINDS = {
    f.name: {
        "int": int,
        "float": float,
        "str": str,
        "bool": bool,
        "int | None": int,
        "float | None": float,
    }[f.type]
    for f in dataclasses.fields(TrainConfig)
}
