"""A :class:`~mfrec.serve.filters.binding.BoundFilter` applied to a catalogue: one boolean mask
over all items per condition, combined with ``&`` and ``|`` (no Python loop over items).

The catalogue is anything with the methods of :class:`ItemTable` (in practice
:class:`mfrec.serve.catalog.Catalog`).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from mfrec.serve.filters.binding import ANY_EVENT, BoundFilter
from mfrec.serve.filters.syntax import Comparison, Condition, Field, Junction, Literal

ITEM_ID_FIELD = "ITEM_ID"  # Personalize's Items dataset key: matches the item ids themselves


class FilterEvaluationError(ValueError):
    """A filter names an item attribute the model has no values for."""


class ItemTable(Protocol):
    num_items: int
    index: dict[str, int]

    def attribute_names(self) -> list[str]: ...

    def matching(self, name: str, values: tuple[str, ...]) -> np.ndarray: ...

    def numeric(self, name: str) -> np.ndarray: ...

    def attribute(self, name: str) -> np.ndarray | None: ...

    def seen_items(self, user_id: str | None) -> np.ndarray: ...


def item_masks(bound: BoundFilter, table: ItemTable) -> tuple[np.ndarray, np.ndarray | None]:
    """(banned item indices, allowed item indices or None) of a bound filter.

    Personalize's rule for chained expressions: the INCLUDE results are united, the EXCLUDE
    results are united, and the answer is ``(union of includes) - (union of excludes)``; without
    an INCLUDE every item is allowed.
    """
    evaluate = _Evaluator(table, bound)
    allowed = None
    if bound.includes:
        allowed = np.zeros(table.num_items, dtype=bool)
        for condition in bound.includes:
            allowed |= evaluate(condition)
    banned = np.zeros(table.num_items, dtype=bool)
    for condition in bound.excludes:
        banned |= evaluate(condition)
    return np.flatnonzero(banned), None if allowed is None else np.flatnonzero(allowed)


class _Evaluator:
    def __init__(self, table: ItemTable, bound: BoundFilter) -> None:
        self.table, self.bound = table, bound

    def __call__(self, condition: Condition) -> np.ndarray:
        """Boolean mask of shape (num_items,): the items the condition holds for."""
        if isinstance(condition, Junction):
            masks = [self(term) for term in condition.terms]
            combine = np.logical_and if condition.op == "AND" else np.logical_or
            return combine.reduce(masks)
        if condition.field.dataset == "Interactions":
            mask = self._indices(self.table.seen_items(self.bound.user_id))
        elif isinstance(condition, Comparison):
            return self._compare(condition)
        else:
            mask = self._member(condition.field, self._strings(condition.values))
        return ~mask if condition.negated else mask

    def _indices(self, idx: np.ndarray) -> np.ndarray:
        mask = np.zeros(self.table.num_items, dtype=bool)
        mask[idx] = True
        return mask

    def _member(self, field: Field, values: tuple[str, ...]) -> np.ndarray:
        name = self._attribute(field)
        if name is None:  # Items.ITEM_ID
            return self._indices([self.table.index[v] for v in values if v in self.table.index])
        return self._indices(self.table.matching(name, values))

    def _strings(self, values) -> tuple[str, ...]:
        """Literal values as strings; CurrentItem fields as the current item's values."""
        strings: list[str] = []
        for value in values:
            if isinstance(value, Literal):
                if value.text != ANY_EVENT or value.number is not None:
                    strings.append(value.text)
            else:
                strings.extend(v for v in self._current(value).split("|") if v)
        return tuple(strings)

    def _compare(self, condition: Comparison) -> np.ndarray:
        """Numbers only; an item without a numeric value never matches (not even ``!=``)."""
        name = self._attribute(condition.field)
        numbers = self.table.numeric(name) if name else np.full(self.table.num_items, np.nan)
        value = condition.value
        target = value.number if isinstance(value, Literal) else _number(self._current(value))
        if target is None or np.isnan(target):
            return np.zeros(self.table.num_items, dtype=bool)
        with np.errstate(invalid="ignore"):
            mask = _OPS[condition.op](numbers, target)
        return mask & ~np.isnan(numbers)

    def _current(self, field: Field) -> str:
        """The current item's value of a CurrentItem field ("" when unknown)."""
        name = self._attribute(field)
        idx = self.table.index.get(self.bound.item_id or "")
        if idx is None:
            return ""
        if name is None:
            return str(self.bound.item_id)
        return str(self.table.attribute(name)[idx])

    def _attribute(self, field: Field) -> str | None:
        """The model's attribute for a field: same name, else the one equal ignoring case;
        None for ``ITEM_ID`` when the model has no attribute of that name."""
        names = self.table.attribute_names()
        if field.name in names:
            return field.name
        folded = [n for n in names if n.lower() == field.name.lower()]
        if len(folded) == 1:
            return folded[0]
        if field.name.upper() == ITEM_ID_FIELD:
            return None
        known = ", ".join(sorted(names)) or "none"
        raise FilterEvaluationError(
            f"{field}: the model has no item attribute {field.name!r} (it has: {known}); "
            "train with item metadata holding that column"
        )


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


_OPS = {
    "=": np.equal,
    "!=": np.not_equal,
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
}
