"""The catalogue as the web page shows it: titles, attribute values ("facets" such as genres),
title search, a user's history with dates, and one way to write a score.

Everything here reads the model artifact only; the recommendations themselves come from
``/invocations``.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

import numpy as np

from mfrec.serve.recommender import Recommender
from mfrec.train.artifact import ATTRIBUTE_PREFIX
from mfrec.train.item_features import SEEN_TIMESTAMPS  # parallel to the seen_indices

MAX_FACET_VALUES = 60  # an attribute with more distinct values is text, not a filter
SCORE_DIGITS = {"score": 2, "popular": 0, "trending": 1}


def format_score(value: float | None, kind: str) -> str:
    """A score as the page shows it: model scores with 2 decimals, popularity counts as whole
    numbers with thousands separators, trending counts with 1 decimal; ``-0.00`` is ``0.00``.
    Halves round away from zero, as JavaScript's ``toLocaleString`` does (Python's ``format``
    rounds them to even), so ``static/web.js``'s ``formatScore`` writes the same text (checked
    in the browser tests)."""
    if value is None or value != value:
        return "–"
    digits = SCORE_DIGITS[kind]
    rounded = Decimal(value).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    text = f"{rounded:,.{digits}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.,") else text


class WebCatalog:
    """Titles, facets and histories of one :class:`Recommender`'s model.

    Attributes
    ----------
    facets : dict of str to list of str
        Each item attribute other than ``title`` with at most ``MAX_FACET_VALUES`` distinct
        values (``a|b`` counts as two), its values sorted: the page's filters.
    has_dates : bool
        Whether the model stores when each training interaction happened (``seen_timestamps``).
    """

    def __init__(self, recommender: Recommender) -> None:
        self.recommender = recommender
        catalog, artifact = recommender.catalog, recommender.artifact
        self.item_ids = catalog.item_ids
        titles = catalog.attribute("title")
        self.titles = self.item_ids if titles is None else np.asarray(titles, dtype=object)
        pairs = zip(self.titles.tolist(), self.item_ids.tolist(), strict=True)
        self._search_keys = [f"{title}\n{item_id}".casefold() for title, item_id in pairs]
        self._by_popularity = np.argsort(-np.asarray(artifact.item_popularity), kind="stable")
        self.facets: dict[str, list[str]] = {}
        self._facet_values: dict[str, list[list[str]]] = {}
        for key, values in sorted(artifact.extra.items()):
            name = key[len(ATTRIBUTE_PREFIX) :]
            if not key.startswith(ATTRIBUTE_PREFIX) or name == "title":
                continue
            split = [[v for v in str(text).split("|") if v] for text in values.tolist()]
            distinct = sorted({v for vs in split for v in vs})
            if 0 < len(distinct) <= MAX_FACET_VALUES:
                self.facets[name], self._facet_values[name] = distinct, split
        self._seen_times = artifact.extra.get(SEEN_TIMESTAMPS)
        self.has_dates = self._seen_times is not None

    def name(self, item_id: str) -> str:
        """The item's title, or its id when the model has no titles or no such item."""
        idx = self.recommender.catalog.index.get(item_id)
        return item_id if idx is None else str(self.titles[idx])

    def row(self, idx: int) -> dict:
        """One item as the page's JSON: id, title and every facet's values."""
        return {
            "item_id": str(self.item_ids[idx]),
            "title": str(self.titles[idx]),
            "attributes": {name: values[idx] for name, values in self._facet_values.items()},
        }

    def details(self, item_ids: list[str]) -> list[dict]:
        """Rows of the known ``item_ids``, in order (unknown ids are left out)."""
        index = self.recommender.catalog.index
        return [self.row(index[i]) for i in item_ids if i in index]

    def search(self, query: str, limit: int) -> list[dict]:
        """Up to ``limit`` items whose title or id contains ``query`` (any case), most popular
        first; nothing for an empty query."""
        needle = query.strip().casefold()
        if not needle:
            return []
        found = []
        for idx in self._by_popularity.tolist():
            if needle in self._search_keys[idx]:
                found.append(self.row(idx))
                if len(found) == limit:
                    break
        return found

    def history(self, user_id: str, limit: int) -> tuple[list[dict], int]:
        """The user's training items (newest first with dates, else in index order), at most
        ``limit`` of them, and how many there are (``[], 0`` for an unknown user)."""
        user_idx = self.recommender.user_index.get(user_id)
        if user_idx is None:
            return [], 0
        artifact = self.recommender.artifact
        start, stop = artifact.seen_indptr[user_idx], artifact.seen_indptr[user_idx + 1]
        items = artifact.seen_indices[start:stop]
        dates: list[str | None] = [None] * len(items)
        if self._seen_times is not None:
            times = np.asarray(self._seen_times[start:stop], dtype=np.int64)
            order = np.argsort(-times, kind="stable")
            items, times = items[order], times[order]
            dates = [_date(t) for t in times.tolist()]
        rows = [
            {**self.row(int(idx)), "date": date}
            for idx, date in zip(items[:limit].tolist(), dates[:limit], strict=True)
        ]
        return rows, int(stop - start)


def _date(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).date().isoformat()
