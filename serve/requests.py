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

import reprlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mfrec.serve import exploration
from mfrec.serve.exploration import Exploration
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
    exploration: Exploration | None = None  # overrides of the deployment's (exploration.py)
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
    **{name: name for name in exploration.FIELDS},
    **exploration.PERSONALIZE_FIELDS,
}
FILTER_FIELDS = ("exclude_items", "include_items", "include_attributes", "exclude_attributes")


# Limits on what one record may ask for (docs/serving.md, "Limits"): they bound the work and the
# size of each answer, so that a few bytes in never become gigabytes out.
MAX_ID_LENGTH = 256  # characters of an id (Amazon Personalize's limit for user and item ids)
MAX_LIST_LENGTH = 1000  # ids in item_ids, history, exclude_items, include_items
MAX_ATTRIBUTE_VALUES = 100  # values in include_attributes/exclude_attributes, all together
_MAX_INT_BITS = 63  # top_n and other counts: anything larger is refused before arithmetic
_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 60
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxdict = 2, 4, 4


def shown(value) -> str:
    """A short, printable, ASCII-safe rendering of a value for an error message: strings are
    cut, nesting is cut, and a huge integer is described instead of printed (Python refuses to
    print integers of more than 4,300 digits)."""
    if isinstance(value, int) and value.bit_length() > 200:
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    try:
        return _SHOWN.repr(value).encode("ascii", "backslashreplace").decode("ascii")
    except (ValueError, RecursionError):  # an object whose repr() itself fails
        return f"a {type(value).__name__}"


def _text(value: str, name: str) -> str:
    """``value`` when it is text that can be written back out: bounded, UTF-8-encodable."""
    if len(value) > MAX_ID_LENGTH:
        raise RecordError(f"{name} has {len(value)} characters; ids have at most {MAX_ID_LENGTH}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise RecordError(
                f"{name} holds a lone UTF-16 surrogate, which is not text ({shown(value)}); "
                "send valid Unicode (in JSON, a surrogate pair like \\ud83d\\ude00)"
            ) from None
    if "\0" in value:
        raise RecordError(f"{name} holds a NUL character ({shown(value)}); remove it")
    return value


def _id(value, name: str) -> str:
    if isinstance(value, str) and value:
        return _text(value, name)
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() <= 800:
        return _text(str(value), name)
    raise RecordError(f"{name} must be a non-empty string or an integer, got {shown(value)}")


def _ids(value, name: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise RecordError(f'{name} must be a list of ids like ["50", "181"], got {shown(value)}')
    if len(value) > MAX_LIST_LENGTH:
        raise RecordError(f"{name} has {len(value)} ids; send at most {MAX_LIST_LENGTH} per record")
    return tuple(_id(item, f"each of {name}") for item in value)


def _int(value, name: str) -> int:
    if isinstance(value, float) and value.is_integer():  # False for NaN and infinities
        value = int(value)
    elif isinstance(value, str) and len(value) <= 30:
        try:
            value = int(value.strip())
        except ValueError:
            pass
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() <= _MAX_INT_BITS:
            return value
    raise RecordError(f"{name} must be an integer, got {shown(value)}")


def _bool(value, name: str) -> bool:
    if (isinstance(value, str) and len(value) <= 10) or (
        isinstance(value, int) and value.bit_length() <= _MAX_INT_BITS
    ):
        if (parsed := parse_bool(value)) is not None:
            return parsed
    raise RecordError(f"{name} must be true or false, got {shown(value)}")


def _choice(choices: tuple[str, ...]) -> Callable:
    def parse(value, name: str) -> str:
        if not isinstance(value, str) or value not in choices:
            raise RecordError(f"{name} must be one of {', '.join(choices)}, got {shown(value)}")
        return value

    return parse


def _attributes(value, name: str) -> AttributeFilter:
    """``{"genre": "Comedy"}`` or ``{"genre": ["Comedy", "Drama"]}``."""
    if not isinstance(value, dict) or not value:
        raise RecordError(f'{name} must be an object like {{"genre": ["Comedy", "Drama"]}}')
    parsed, count = [], 0
    for attribute, values in value.items():
        values = [values] if isinstance(values, str) else values
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise RecordError(f"{name}: values of {shown(attribute)} must be strings")
        count += len(values)
        if count > MAX_ATTRIBUTE_VALUES:
            raise RecordError(f"{name} has more than {MAX_ATTRIBUTE_VALUES} values; send fewer")
        texts = tuple(_text(v, f"{name}: a value of {shown(attribute)}") for v in values)
        parsed.append((_text(str(attribute), f"{name}: an attribute name"), texts))
    return tuple(parsed)


def _record_error(parse: Callable) -> Callable:
    """``parse`` raising :class:`RecordError` for its ValueError."""

    def parse_field(value, name: str):
        try:
            return parse(value, name)
        except ValueError as exc:
            raise RecordError(str(exc)) from None

    return parse_field


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
    **{name: _record_error(parse) for name, parse in exploration.PARSERS.items()},
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
            raise RecordError(f"unknown field {shown(key)}; use {', '.join(FIELD_NAMES)}")
        if name in fields:
            raise RecordError(f"field {name!r} is given twice (as {key!r} too)")
        if value is not None:
            fields[name] = _PARSERS[name](value, key)
    filters = {name: fields.pop(name) for name in FILTER_FIELDS if name in fields}
    explore = {
        attr: fields.pop(name) for name, attr in exploration.FIELDS.items() if name in fields
    }
    fields["exploration"] = Exploration(**explore) if explore else None
    if filter_fields:
        ids = fields.get("user_id"), fields.get("item_id")
        filters["expression"] = personalize.bound_filter(filter_fields, *ids)
    return Request.from_fields(filters=Filters(**filters) if filters else NO_FILTERS, **fields)
