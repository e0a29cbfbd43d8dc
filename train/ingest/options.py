"""Import options: how interaction files are read and filtered, parsed from hyperparameters.

Every field of :class:`ImportOptions` is also a hyperparameter (and a ``mfrec validate`` /
``mfrec import`` / ``mfrec train`` flag) of the same name. At the SageMaker boundary every value is
a string: ``"3.5"``, ``"click,purchase"`` (or a JSON list), ``"click:1,purchase:5"`` (or a JSON
object), ``"true"``/``"false"`` for ``header``; ``""``, ``"none"`` and ``"null"`` mean "not set".
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from mfrec.train.errors import ConfigError
from mfrec.train.ingest.columns import ROLES

#: The allowed values of the options that have fixed ones (the CLI shows them in --help).
CHOICES = {
    "duplicates": ("keep", "first", "sum"),
    "on_bad_rows": ("error", "skip"),
    "header": ("auto", "yes", "no"),
}
_NONE = ("", "none", "null")


@dataclass(frozen=True)
class ImportOptions:
    """How to read interaction files; every field is also a hyperparameter of the same name.

    ``*_column``: explicit column names (win over detection; ``column_N`` for headerless
    files). ``min_event_value``: keep rows whose value is >= it. ``event_types``: keep only
    these types. ``event_type_weights``: ``(("click", 1.0), ("purchase", 5.0))``, given as
    ``"click:1,purchase:5"``. ``duplicates``: ``keep`` all rows, keep the ``first`` of each
    (user, item) pair in (timestamp, file) order, or ``sum`` their weights into one row with the
    latest timestamp. ``on_bad_rows``: ``error`` or ``skip`` (drop and count). ``header``:
    ``auto``, ``yes`` or ``no``.
    """

    user_column: str | None = None
    item_column: str | None = None
    timestamp_column: str | None = None
    value_column: str | None = None
    event_type_column: str | None = None
    min_event_value: float | None = None
    event_types: tuple[str, ...] | None = None
    event_type_weights: tuple[tuple[str, float], ...] | None = None
    duplicates: str = "keep"
    on_bad_rows: str = "error"
    header: str = "auto"

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"{name}={getattr(self, name)!r} is not valid; use one of {', '.join(allowed)}"
                )
        if isinstance(self.event_type_weights, dict):
            pairs = tuple((str(k), float(v)) for k, v in self.event_type_weights.items())
            object.__setattr__(self, "event_type_weights", pairs)
        if isinstance(self.event_types, (list, str)):
            types = (self.event_types,) if isinstance(self.event_types, str) else self.event_types
            object.__setattr__(self, "event_types", tuple(types))

    @classmethod
    def hyperparameter_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_hyperparameters(cls, hyperparameters: dict) -> ImportOptions:
        """Parse the string values of the keys named in :meth:`hyperparameter_names`.

        Other keys are left for other parts of the configuration. Raises ``ConfigError``.
        """
        parsed = {}
        for name in cls.hyperparameter_names():
            if name not in hyperparameters:
                continue
            raw = hyperparameters[name]
            text = str(raw).strip()
            if raw is None or text.lower() in _NONE:
                continue
            parsed[name] = _parse(name, raw, text)
        return cls(**parsed)

    @property
    def type_weights(self) -> dict[str, float]:
        return dict(self.event_type_weights or ())

    def column_names(self) -> dict[str, str | None]:
        return {role: getattr(self, f"{role}_column") for role in ROLES}

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


def _parse(name: str, raw, text: str):
    if name == "min_event_value":
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"min_event_value={text!r} is not a number, e.g. use 3.5") from None
    if name == "event_types":
        if isinstance(raw, (list, tuple)):
            items = raw
        else:
            items = _json(name, text) if text.startswith("[") else text.split(",")
        return tuple(str(t).strip() for t in items if str(t).strip())
    if name == "event_type_weights":
        return _parse_weights(raw, text)
    if name in CHOICES:
        text = {"true": "yes", "false": "no"}.get(text.lower(), text.lower())
    return text


def _json(name: str, text: str):
    try:
        return json.loads(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not valid JSON") from None


def _parse_weights(raw, text: str) -> tuple[tuple[str, float], ...]:
    try:
        if isinstance(raw, dict) or text.startswith("{"):
            mapping = raw if isinstance(raw, dict) else json.loads(text)
            return tuple((str(k), float(v)) for k, v in mapping.items())
        if isinstance(raw, (list, tuple)):
            return tuple((str(k), float(v)) for k, v in raw)
        pairs = [part.rsplit(":", 1) for part in text.split(",") if part.strip()]
        return tuple((k.strip(), float(v)) for k, v in pairs)
    except (ValueError, TypeError):
        raise ConfigError(
            f"event_type_weights={text!r} is not valid; write it as 'click:1,purchase:5'"
        ) from None
