"""A parsed filter checked against what mfrec models keep, and its ``$PARAMETER`` placeholders
filled from a request's ``filterValues`` (:func:`bind`).

The result, a :class:`BoundFilter`, holds only literal values and the request's user and item;
:mod:`mfrec.serve.filters.masks` turns it into item masks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from mfrec.serve.filters.syntax import (
    Comparison,
    Condition,
    Expression,
    Field,
    Filter,
    FilterSyntaxError,
    Junction,
    Literal,
    Membership,
    Param,
    parse,
)

ANY_EVENT = "*"


class FilterNotSupported(ValueError):
    """A well-formed filter that needs data mfrec models do not keep."""


class FilterValueError(ValueError):
    """``filterValues`` that do not fit the filter (missing, unused, not a number)."""


@dataclass(frozen=True)
class BoundFilter:
    """A filter with every placeholder filled: the conditions of its INCLUDE expressions and of
    its EXCLUDE expressions (those left after dropping parts with missing values), and the
    request's user (for ``Interactions``) and item (for ``CurrentItem``)."""

    includes: tuple[Condition, ...]
    excludes: tuple[Condition, ...]
    text: str
    user_id: str | None = None
    item_id: str | None = None


def _walk(condition: Condition):
    if isinstance(condition, Junction):
        for term in condition.terms:
            yield from _walk(term)
    else:
        yield condition


def _datasets(condition: Condition) -> set[str]:
    return {leaf.field.dataset for leaf in _walk(condition)}


def check(filter_: Filter) -> None:
    """Raise when the filter breaks Personalize's rules or needs data mfrec does not keep.

    Raises
    ------
    FilterSyntaxError
        Items and Interactions mixed in one expression, CurrentItem/CurrentUser misplaced, ``*``
        or a comparison used where they do not apply.
    FilterNotSupported
        ``IF CurrentUser...`` (no user metadata) or an event type other than ``"*"``.
    """
    for expression in filter_.expressions:
        datasets = _datasets(expression.where)
        if not datasets <= {"Items", "Interactions"}:
            wrong = sorted(datasets - {"Items", "Interactions"})[0]
            where = "IF CurrentUser.<field>" if wrong == "CurrentUser" else "a value"
            raise FilterSyntaxError(
                f"{wrong} fields go after WHERE only as {where}, e.g. Items.GENRE IN "
                "CurrentItem.GENRE; the left side is Items.<field> or Interactions.EVENT_TYPE"
            )
        if len(datasets) > 1:
            raise FilterSyntaxError(
                "one expression cannot mix Items and Interactions conditions; chain two "
                "expressions with '|'"
            )
        for leaf in _walk(expression.where):
            _check_leaf(leaf)
        if expression.condition is not None:
            if _datasets(expression.condition) != {"CurrentUser"}:
                raise FilterSyntaxError("IF takes CurrentUser.<field> conditions only")
            field = next(_walk(expression.condition)).field
            raise FilterNotSupported(
                f"IF {field} needs user metadata, which mfrec models do not keep (they keep item "
                "metadata only); remove the IF condition"
            )


def _check_leaf(leaf: Membership | Comparison) -> None:
    field = leaf.field
    if field.dataset == "Interactions":
        if field.name.upper() != "EVENT_TYPE":
            raise FilterSyntaxError(f"{field}: Interactions filters use Interactions.EVENT_TYPE")
        if isinstance(leaf, Comparison):
            raise FilterSyntaxError(f"{field} takes IN or NOT IN, not {leaf.op}")
        for value in leaf.values:
            if isinstance(value, Field):
                raise FilterSyntaxError(f"{field} takes event types, not {value}")
            if isinstance(value, Literal):
                _check_event_type(value.text)
        return
    values = leaf.values if isinstance(leaf, Membership) else (leaf.value,)
    for value in values:
        if isinstance(value, Field) and value.dataset != "CurrentItem":
            raise FilterSyntaxError(f"{value} cannot be a value; use CurrentItem.<field>")
        if isinstance(value, Literal) and value.text == ANY_EVENT and value.number is None:
            raise FilterSyntaxError('"*" applies to Interactions.EVENT_TYPE only')
    if isinstance(leaf, Comparison) and isinstance(leaf.value, Literal):
        if leaf.value.number is None:
            raise FilterSyntaxError(
                f'{field} {leaf.op} "{leaf.value.text}": comparisons take numbers; '
                f'match strings with {field} IN ("{leaf.value.text}")'
            )


def _check_event_type(event_type: str) -> None:
    if event_type != ANY_EVENT:
        raise FilterNotSupported(
            f'Interactions.EVENT_TYPE IN ("{event_type}") is not supported by this model: it keeps '
            'which items each user interacted with in training, not their event types; use IN ("*")'
            " for any interaction"
        )


@lru_cache(maxsize=1024)
def compile_filter(text: str) -> Filter:
    """:func:`~mfrec.serve.filters.syntax.parse` and :func:`check`, once per distinct text."""
    filter_ = parse(text)
    check(filter_)
    return filter_


# --- placeholders ----------------------------------------------------------------------------

_VALUE = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|([^,]*))\s*(?:,|$)')


def split_values(text: str) -> tuple[str, ...]:
    """Personalize's ``filterValues`` text to values: ``"\\"Comedy\\",\\"Drama\\""`` gives
    ``("Comedy", "Drama")``; unquoted values are split at commas and stripped."""
    values, position = [], 0
    text = text.strip()
    while position < len(text):
        match = _VALUE.match(text, position)
        if match is None or match.end() == position:
            raise FilterValueError(
                f'cannot read the values {text!r:.60}; write them like "\\"Comedy\\",\\"Drama\\""'
            )
        quoted, bare = match.groups()
        values.append(re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare.strip())
        position = match.end()
    return tuple(value for value in values if value != "")


def params(filter_: Filter) -> set[str]:
    """The placeholder names the filter uses (without ``$``)."""
    names = set()
    for expression in filter_.expressions:
        for leaf in _walk(expression.where):
            values = leaf.values if isinstance(leaf, Membership) else (leaf.value,)
            names.update(v.name for v in values if isinstance(v, Param))
    return names


def bind(
    filter_: Filter,
    values: Mapping[str, str] | None = None,
    user_id: str | None = None,
    item_id: str | None = None,
) -> BoundFilter:
    """Fill the placeholders of a checked filter from ``values`` (``filterValues``).

    A part of an EXCLUDE expression whose placeholder has no value is dropped (an expression
    left with no condition excludes nothing), as Personalize does; an INCLUDE expression needs
    every value.

    Raises
    ------
    FilterValueError
        A value missing from an INCLUDE expression, a key the filter does not use, a number
        that is not one, CurrentItem without an item.
    FilterNotSupported
        An event type other than ``"*"`` given as a value.
    """
    values = {str(k).removeprefix("$"): v for k, v in (values or {}).items()}
    used = params(filter_)
    if unused := sorted(set(values) - used):
        known = ", ".join(sorted(used)) or "none"
        raise FilterValueError(
            f"filterValues has {', '.join(unused)}, which the filter does not use "
            f"(its parameters: {known})"
        )
    for name, value in values.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            values[name] = value = str(value)  # {"MAX": 10}: lenient, Personalize sends "10"
        if not isinstance(value, str):
            raise FilterValueError(f'filterValues {name} must be a string like "\\"Comedy\\""')
    parsed = {name: split_values(value) for name, value in values.items()}
    includes, excludes = [], []
    for expression in filter_.expressions:
        where = _fill(expression, expression.where, parsed)
        if where is not None:
            (includes if expression.action == "INCLUDE" else excludes).append(where)
    bound = BoundFilter(tuple(includes), tuple(excludes), filter_.text, user_id, item_id)
    if item_id is None and any(_uses_current_item(c) for c in includes + excludes):
        raise FilterValueError(
            "CurrentItem.<field> applies to related-items requests; give the request's itemId"
        )
    return bound


def _uses_current_item(condition: Condition) -> bool:
    for leaf in _walk(condition):
        values = leaf.values if isinstance(leaf, Membership) else (leaf.value,)
        if any(isinstance(v, Field) for v in values):
            return True
    return False


def _fill(expression: Expression, condition: Condition, values: dict) -> Condition | None:
    """The condition with placeholders replaced; None when a missing value drops it."""
    if isinstance(condition, Junction):
        terms = tuple(t for t in (_fill(expression, t, values) for t in condition.terms) if t)
        if not terms:
            return None
        return terms[0] if len(terms) == 1 else Junction(condition.op, terms)
    leaf_values = condition.values if isinstance(condition, Membership) else (condition.value,)
    missing = [v.name for v in leaf_values if isinstance(v, Param) and not values.get(v.name)]
    if missing and expression.action == "INCLUDE":
        raise FilterValueError(
            f"filterValues has no value for ${missing[0]}; an INCLUDE expression needs every "
            f'parameter: add "{missing[0]}": "\\"value\\"" to filterValues'
        )
    if missing:
        return None
    filled: list = []
    for value in leaf_values:
        if not isinstance(value, Param):
            filled.append(value)
            continue
        for text in values[value.name]:
            filled.append(_literal(condition, value.name, text))
    if isinstance(condition, Comparison):
        if len(filled) != 1:
            raise FilterValueError(f"filterValues {leaf_values[0].name} must be one number")
        return Comparison(condition.field, condition.op, filled[0])
    return Membership(condition.field, tuple(filled), condition.negated)


def _literal(condition: Membership | Comparison, name: str, text: str) -> Literal:
    if condition.field.dataset == "Interactions":
        _check_event_type(text)
    if isinstance(condition, Comparison):
        try:
            return Literal(text, float(text))
        except ValueError:
            raise FilterValueError(
                f"filterValues {name} must be a number for {condition.field} {condition.op} "
                f"${name}, got {text!r:.40}"
            ) from None
    return Literal(text)
