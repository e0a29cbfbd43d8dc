"""The item side of a model: item ids and indices, popular and trending lists, item attributes,
and request filters turned into item indices.

Item metadata comes from the artifact's extra arrays ``item_attribute.<name>`` (one string per
item; several values separated by ``|``, as in Amazon Personalize's Items dataset, e.g.
``Comedy|Drama``). Trending needs ``item_trending``: one recency-weighted interaction count per
item, written at training time.
"""

from __future__ import annotations

import numpy as np

from mfrec.serve.filters import FilterEvaluationError, item_masks
from mfrec.serve.requests import Filters
from mfrec.train.artifact import ATTRIBUTE_PREFIX, TRENDING, ModelArtifact

SCORE_DECIMALS = 6  # scores are rounded to 6 decimals: float32 carries about 7 digits


class FilterError(ValueError):
    """A filter names an attribute the model has no values for."""


class Catalog:
    """Items of a model, looked up by external id (a dict built once)."""

    def __init__(self, artifact: ModelArtifact) -> None:
        self.item_ids = np.array(artifact.item_ids.tolist(), dtype=object)
        self.index = {item_id: idx for idx, item_id in enumerate(self.item_ids.tolist())}
        self.num_items = len(self.item_ids)
        self._lists = {"popular": np.asarray(artifact.item_popularity, dtype=np.float64)}
        if TRENDING in artifact.extra:
            self._lists["trending"] = np.asarray(artifact.extra[TRENDING], dtype=np.float64)
        self._orders: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._attribute_values = {
            name[len(ATTRIBUTE_PREFIX) :]: values
            for name, values in artifact.extra.items()
            if name.startswith(ATTRIBUTE_PREFIX)
        }
        self._attribute_index: dict[str, dict[str, np.ndarray]] = {}
        self._numeric: dict[str, np.ndarray] = {}
        self._user_ids, self._user_order = artifact.user_ids, None
        self._seen = artifact.seen_indptr, artifact.seen_indices

    def indices(self, item_ids) -> tuple[np.ndarray, list[str]]:
        """Indices of the known ids (in order) and the unknown ids."""
        found = [self.index.get(item_id) for item_id in item_ids]
        unknown = [item_id for item_id, idx in zip(item_ids, found, strict=True) if idx is None]
        return np.array([idx for idx in found if idx is not None], dtype=np.int64), unknown

    def has_list(self, name: str) -> bool:
        return name in self._lists

    def counts(self, name: str) -> np.ndarray:
        """Each item's ``popular`` or ``trending`` count, shape (num_items,)."""
        return self._lists[name]

    def ordered(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Items by descending ``popular`` or ``trending`` count (ties: index order), counts."""
        if name not in self._orders:
            counts = self._lists[name]
            order = np.argsort(-counts, kind="stable")
            self._orders[name] = order, np.round(counts[order], SCORE_DECIMALS)
        return self._orders[name]

    def best_of_list(self, name: str, top_n: int, banned: np.ndarray, allowed: np.ndarray | None):
        """The ``top_n`` first items of a list that the masks let through: (indices, counts)."""
        order, counts = self.ordered(name)
        keep = np.ones(self.num_items, dtype=bool)
        keep[banned] = False
        if allowed is not None:
            only = np.zeros(self.num_items, dtype=bool)
            only[allowed] = True
            keep &= only
        chosen = np.flatnonzero(keep[order])[:top_n]
        return order[chosen], counts[chosen]

    def attribute(self, name: str) -> np.ndarray | None:
        """The values of item attribute ``name`` (one string per item), if the model has it."""
        return self._attribute_values.get(name)

    def masks(self, filters: Filters) -> tuple[np.ndarray, np.ndarray | None]:
        """(banned item indices, allowed item indices or None) of a request's filters."""
        banned = [self.indices(filters.exclude_items)[0]]
        banned += [self._matching(name, values) for name, values in filters.exclude_attributes]
        allowed = None
        if filters.expression is not None:  # Personalize's filter language (mfrec.serve.filters)
            try:
                expression_banned, allowed = item_masks(filters.expression, self)
            except FilterEvaluationError as exc:
                raise FilterError(str(exc)) from None
            banned.append(expression_banned)
        if filters.include_items is not None:
            listed = np.unique(self.indices(filters.include_items)[0])
            allowed = listed if allowed is None else np.intersect1d(allowed, listed)
        for name, values in filters.include_attributes:
            matching = self._matching(name, values)
            allowed = matching if allowed is None else np.intersect1d(allowed, matching)
        return np.concatenate(banned), allowed

    # -- what Personalize's filter expressions read (mfrec.serve.filters.ItemTable) ----------

    def attribute_names(self) -> list[str]:
        return list(self._attribute_values)

    def matching(self, name: str, values: tuple[str, ...]) -> np.ndarray:
        """Indices of the items whose attribute ``name`` has one of ``values``."""
        return self._matching(name, values)

    def numeric(self, name: str) -> np.ndarray:
        """Attribute ``name`` as float64, NaN where a value is not one number; cached."""
        if name not in self._numeric:
            values = self._attribute_values[name]
            numbers = np.full(len(values), np.nan)
            for idx, text in enumerate(values.tolist()):
                try:
                    numbers[idx] = float(text)
                except ValueError:
                    pass
            self._numeric[name] = numbers
        return self._numeric[name]

    def seen_items(self, user_id: str | None) -> np.ndarray:
        """The training items of a user (empty for an unknown one); the sorted user ids are
        built on first use."""
        if self._user_order is None:
            self._user_order = np.argsort(self._user_ids, kind="stable")
        order, ids = self._user_order, self._user_ids
        position = int(np.searchsorted(ids, str(user_id), sorter=order)) if len(ids) else 0
        if user_id is None or position >= len(ids) or ids[order[position]] != user_id:
            return np.empty(0, dtype=np.int64)
        user_idx = order[position]
        indptr, indices = self._seen
        return np.asarray(indices[indptr[user_idx] : indptr[user_idx + 1]], dtype=np.int64)

    def _matching(self, name: str, values: tuple[str, ...]) -> np.ndarray:
        """Items whose attribute ``name`` has one of ``values``."""
        index = self._attribute_index.get(name)
        if index is None:
            if name not in self._attribute_values:
                known = ", ".join(sorted(self._attribute_values)) or "none"
                raise FilterError(
                    f"the model has no item attribute {name!r} (it has: {known}); "
                    "train with item metadata holding that column"
                )
            index = self._attribute_index[name] = _inverted(self._attribute_values[name])
        empty = np.empty(0, dtype=np.int64)
        return np.unique(np.concatenate([index.get(value, empty) for value in values] + [empty]))


def _inverted(values: np.ndarray) -> dict[str, np.ndarray]:
    """value → indices of the items that have it (``a|b`` gives both)."""
    lists: dict[str, list[int]] = {}
    for idx, text in enumerate(values.tolist()):
        for value in str(text).split("|"):
            if value:
                lists.setdefault(value, []).append(idx)
    return {value: np.array(idx, dtype=np.int64) for value, idx in lists.items()}
