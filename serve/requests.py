"""What a client can ask for (request records, their types, their filters) and what it gets.

A record's ``type`` is given or inferred from its fields (:func:`infer_type`):

================  =====================================================  ======================
type              example record                                         answer
================  =====================================================  ======================
``user``          ``{"user_id": "685", "top_n": "5"}``                   items for a known user
``history``       ``{"user_id": "new-42", "history": ["50", "181"]}``    items for a fresh
                                                                         history (fold-in)
``similar_items`` ``{"item_id": "50", "top_n": "10"}``                   items like an item
``rank``          ``{"user_id": "685", "item_ids": ["1", "50"]}``        those items re-ordered
``popular``       ``{"top_n": "10"}``                                    most popular items
``trending``      ``{"type": "trending", "top_n": "10"}``                popular, recent first
================  =====================================================  ======================

:class:`Filters` apply to every type; a filter that leaves fewer than ``top_n`` items gives
fewer items, never an error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mfrec.serve.filters import BoundFilter
from mfrec.train.config import parse_bool

REQUEST_TYPES = ("user", "history", "similar_items", "rank", "popular", "trending")
SIMILARITIES = ("embedding", "cooccurrence")

AttributeFilter = tuple[tuple[str, tuple[str, ...]], ...]  # ((attribute, (values, ...)), ...)


@dataclass(frozen=True)
class Filters:
    """Which items may be returned.

    Attributes
    ----------
    exclude_items : item ids never returned
    include_items : when not None, only these item ids may be returned
    include_attributes : only items whose attribute has one of the values, e.g.
        ``(("genre", ("Comedy",)),)``; needs item metadata in the model (``item_attribute.*``)
    exclude_attributes : items whose attribute has one of the values are not returned
    expression : a Personalize filter expression with its values (``filterExpression`` or
        ``filterArn`` and ``filterValues``; :mod:`mfrec.serve.filters`)
    """

    exclude_items: tuple[str, ...] = ()
    include_items: tuple[str, ...] | None = None
    include_attributes: AttributeFilter = ()
    exclude_attributes: AttributeFilter = ()
    expression: BoundFilter | None = None

    def __bool__(self) -> bool:
        return bool(
            self.expression is not None
            or self.exclude_items
            or self.include_items is not None
            or self.include_attributes
            or self.exclude_attributes
        )


NO_FILTERS = Filters()


@dataclass(frozen=True)
class Request:
    """One record of a request body, type-checked; ``None`` means the deployment's default.

    ``user_id`` on a ``similar_items`` or ``popular`` request only serves ``exclude_seen``;
    ``history`` lists item ids the user interacted with after training (newest last).
    ``personalize``: the record used Amazon Personalize's field names; it is answered in
    Personalize's shape with scores in [0, 1] (:mod:`mfrec.serve.personalize`).
    """

    type: str = "user"
    user_id: str | None = None
    item_id: str | None = None
    item_ids: tuple[str, ...] | None = None
    history: tuple[str, ...] | None = None
    top_n: int | None = None
    exclude_seen: bool | None = None
    similarity: str | None = None
    filters: Filters = NO_FILTERS
    personalize: bool = field(default=False, compare=False)  # how to answer, not what

    @classmethod
    def from_fields(cls, type: str | None = None, **fields) -> Request:  # noqa: A002
        """A request whose type is ``type`` or, when absent, inferred from the fields."""
        return cls(type=type or infer_type(fields), **fields)

    @property
    def subject(self) -> str:
        """What the answer is about: the item for similar items, else the user (or "")."""
        if self.type == "similar_items":
            return self.item_id or ""
        return self.user_id or ""


def infer_type(fields: dict) -> str:
    """The request type implied by the fields present (see the module docstring)."""
    if fields.get("item_ids") is not None:
        return "rank"
    if fields.get("history") is not None:
        return "history"
    if fields.get("item_id") is not None:
        return "similar_items"
    if fields.get("user_id") is not None:
        return "user"
    return "popular"


@dataclass(frozen=True)
class Recommendation:
    """The answer to one request: item ids best first, their scores, and a note or an error.

    Unpacks like implicit's ``(ids, scores)``: ``item_ids, scores = recommendation``.

    Attributes
    ----------
    item_ids : ndarray of str objects, shape (n,)
    scores : ndarray of float64, shape (n,)
        Rounded to 6 decimals: model scores (``U[u] @ V[i] + user_bias[u] + item_bias[i]``),
        cosine similarities, or popularity counts; NaN for an item the model does not know
        (ranking requests place those last).
    note : str or None
        Set when the answer is not what was asked (a popularity fallback, unknown items).
    error : str or None
        Set when the request could not be answered; ``item_ids`` is then empty.
    probabilities : ndarray of float64, shape (n,), or None
        Scores in [0, 1] for Personalize-shaped requests (:mod:`mfrec.serve.probabilities`).
    basis : str
        What the scores measure: ``"model"``, or ``"popularity"`` for popularity lists and the
        fallback for users and items the model does not know.
    """

    item_ids: np.ndarray
    scores: np.ndarray
    note: str | None = None
    error: str | None = None
    probabilities: np.ndarray | None = None
    basis: str = "model"

    def __iter__(self):
        return iter((self.item_ids, self.scores))

    @classmethod
    def failed(cls, error: str) -> Recommendation:
        return cls(np.empty(0, dtype=object), np.empty(0), error=error)


# ---------------------------------------------------------------------------------------------
# Records as they arrive (JSON objects, CSV rows) to requests.


class RecordError(ValueError):
    """One record cannot be read; it becomes an error answer, the rest of the body goes on."""


# Field names accepted in a record, with Amazon Personalize's spellings.
FIELD_NAMES = {
    "type": "type",
    "user_id": "user_id",
    "userId": "user_id",
    "item_id": "item_id",
    "itemId": "item_id",
    "item_ids": "item_ids",
    "itemList": "item_ids",
    "history": "history",
    "top_n": "top_n",
    "numResults": "top_n",
    "exclude_seen": "exclude_seen",
    "similarity": "similarity",
    "exclude_items": "exclude_items",
    "include_items": "include_items",
    "include_attributes": "include_attributes",
    "exclude_attributes": "exclude_attributes",
}
FILTER_FIELDS = ("exclude_items", "include_items", "include_attributes", "exclude_attributes")


def _id(value, name: str) -> str:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise RecordError(f"{name} must be a non-empty string or an integer, got {value!r:.60}")


def _ids(value, name: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise RecordError(f'{name} must be a list of ids like ["50", "181"], got {value!r:.60}')
    return tuple(_id(item, f"each of {name}") for item in value)


def _int(value, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise RecordError(f"{name} must be an integer, got {value!r:.60}")


def _bool(value, name: str) -> bool:
    if (parsed := parse_bool(value)) is not None:
        return parsed
    raise RecordError(f"{name} must be true or false, got {value!r:.60}")


def _choice(choices: tuple[str, ...]) -> Callable:
    def parse(value, name: str) -> str:
        if value not in choices:
            raise RecordError(f"{name} must be one of {', '.join(choices)}, got {value!r:.60}")
        return value

    return parse


def _attributes(value, name: str) -> AttributeFilter:
    """``{"genre": "Comedy"}`` or ``{"genre": ["Comedy", "Drama"]}``."""
    if not isinstance(value, dict) or not value:
        raise RecordError(f'{name} must be an object like {{"genre": ["Comedy", "Drama"]}}')
    parsed = []
    for attribute, values in value.items():
        values = [values] if isinstance(values, str) else values
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise RecordError(f"{name}: values of {attribute!r} must be strings")
        parsed.append((str(attribute), tuple(values)))
    return tuple(parsed)


_PARSERS: dict[str, Callable] = {
    "type": _choice(REQUEST_TYPES),
    "user_id": _id,
    "item_id": _id,
    "item_ids": _ids,
    "history": _ids,
    "top_n": _int,
    "exclude_seen": _bool,
    "similarity": _choice(SIMILARITIES),
    "exclude_items": _ids,
    "include_items": _ids,
    "include_attributes": _attributes,
    "exclude_attributes": _attributes,
}


def request_from_fields(obj: dict) -> Request:
    """The :class:`Request` a record's fields describe; unknown fields are errors.

    Raises
    ------
    RecordError
        A field is unknown, given twice (under two spellings), or has a bad value.
    """
    from mfrec.serve import personalize  # it imports this module

    if personalize.is_personalize(obj):
        return personalize.request_from_personalize(obj)
    obj, filter_fields = personalize.split_filter_fields(obj)
    fields = {}
    for key, value in obj.items():
        name = FIELD_NAMES.get(key)
        if name is None:
            raise RecordError(f"unknown field {key!r}; use {', '.join(FIELD_NAMES)}")
        if name in fields:
            raise RecordError(f"field {name!r} is given twice (as {key!r} too)")
        if value is not None:
            fields[name] = _PARSERS[name](value, key)
    filters = {name: fields.pop(name) for name in FILTER_FIELDS if name in fields}
    if filter_fields:
        ids = fields.get("user_id"), fields.get("item_id")
        filters["expression"] = personalize.bound_filter(filter_fields, *ids)
    return Request.from_fields(filters=Filters(**filters) if filters else NO_FILTERS, **fields)
