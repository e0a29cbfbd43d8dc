"""How stored events reach a recommendation: the request is changed before it reaches the
:class:`~mfrec.serve.recommender.Recommender`, which knows nothing of events.

==================================  =========================================================
request of a user with events       becomes
==================================  =========================================================
``user`` (known or new user)        ``history`` with the stored items (newest last): a known
                                    user's trained vector is the fold-in's prior, a new user
                                    is folded in from the events alone; the items are left out
``history``                         the stored items before the request's own
``similar_items``, ``popular``,     the stored items added to ``exclude_items`` when the
``trending`` with ``exclude_seen``  request asks to leave out what the user has seen
``rank``                            unchanged (ranked with the trained vector, or popularity)
==================================  =========================================================

Item metadata from PutItems (:func:`refresh_catalog`) replaces the model's values of the
attributes that filters read, for the items the model knows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from mfrec.serve.catalog import Catalog
from mfrec.serve.events.store import EventStore
from mfrec.serve.requests import MAX_LIST_LENGTH, Request
from mfrec.train.artifact import ATTRIBUTE_PREFIX


def augment(requests: Sequence[Request | None], store: EventStore) -> list[Request | None]:
    """``requests`` with each user's stored events applied (see the module docstring); None
    entries (unreadable records) are kept as they are. One store read for all users."""
    users = [r.user_id for r in requests if r is not None and r.user_id is not None]
    histories = store.histories(users) if users else {}
    if not histories:
        return list(requests)
    return [_with_history(r, histories.get(r.user_id)) if r is not None else r for r in requests]


def _with_history(request: Request, stored: tuple[str, ...] | None) -> Request:
    if not stored:
        return request
    if request.type == "user":
        return dataclasses.replace(request, type="history", history=stored[-MAX_LIST_LENGTH:])
    if request.type == "history":
        history = (stored + (request.history or ()))[-MAX_LIST_LENGTH:]
        return dataclasses.replace(request, history=history)
    if request.type in ("similar_items", "popular", "trending") and request.exclude_seen:
        filters = request.filters
        excluded = tuple(dict.fromkeys(filters.exclude_items + stored))
        return dataclasses.replace(
            request, filters=dataclasses.replace(filters, exclude_items=excluded)
        )
    return request


# --- item metadata (PutItems) ----------------------------------------------------------------


def _folded(name: str) -> str:
    """A field name as Personalize's properties spell it, compared loosely: ``GENRE_TAGS``,
    ``genreTags`` and ``genre_tags`` are the same field."""
    return name.replace("_", "").lower()


def attribute_for(properties: Mapping[str, object], attribute_names: Sequence[str]) -> dict:
    """{model attribute: value text} of an item's PutItems ``properties``, and the property
    names that match no attribute of the model (as ``{None: [names]}`` when there are any)."""
    by_folded = {_folded(name): name for name in attribute_names}
    values, unmatched = {}, []
    for key, value in properties.items():
        name = by_folded.get(_folded(str(key)))
        if name is None:
            unmatched.append(str(key))
        else:
            values[name] = _text(value)
    if unmatched:
        values[None] = unmatched
    return values


def _text(value) -> str:
    """A property value as the model's attribute text: lists joined with ``|``."""
    if isinstance(value, list):
        return "|".join(_text(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


def catalog_with(catalog: Catalog, artifact, stored: Mapping[str, Mapping[str, str]]) -> Catalog:
    """A new catalogue whose attribute values are the model's with ``stored`` (item id ->
    {attribute: text}) in place; items the model does not know are skipped."""
    extra = dict(artifact.extra)
    columns: dict[str, np.ndarray] = {}
    for item_id, values in stored.items():
        idx = catalog.index.get(item_id)
        if idx is None:
            continue
        for name, text in values.items():
            key = ATTRIBUTE_PREFIX + name
            if key not in extra:
                continue
            if key not in columns:
                columns[key] = np.array(extra[key].tolist(), dtype=object)
            columns[key][idx] = text
    extra.update(columns)
    return Catalog(dataclasses.replace(artifact, extra=extra))
