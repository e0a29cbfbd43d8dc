"""The app's events store and the hook through which stored events reach recommendations:
requests are changed (:mod:`mfrec.serve.events.augment`) before they reach the
:class:`~mfrec.serve.recommender.Recommender`, on ``/invocations`` and on Personalize's paths.
"""

from __future__ import annotations

import dataclasses
import logging
import threading

from flask import current_app

from mfrec.serve.events import augment
from mfrec.serve.events.store import EventStore, EventStoreError

logger = logging.getLogger(__name__)

EXTENSION = "mfrec.events"  # app.extensions key of the app's Events


class EventsOff(ValueError):
    """The events API was called on a server whose events are off."""


class Events:
    """The app's events store and the catalogue version last applied in this process."""

    def __init__(self, store: EventStore | None) -> None:
        self.store = store
        self._items_version = 0
        self._lock = threading.Lock()

    def require(self) -> EventStore:
        if self.store is None:
            raise EventsOff(
                "events are off on this server: set MFREC_EVENTS_DB (a file path or a redis:// "
                "URL), or serve with mfrec serve --model-dir"
            )
        return self.store

    def augment(self, requests: list, recommender) -> list:
        """``requests`` with stored events applied, the catalogue refreshed first when a request
        has filters and PutItems changed something; on a store error, unchanged (logged)."""
        if self.store is None or not requests:
            return requests
        try:
            if any(r is not None and r.filters for r in requests):
                self._refresh_catalog(recommender)
            return augment.augment(requests, self.store)
        except EventStoreError as exc:
            logger.warning("answering without stored events: %s", exc)
            return requests

    def _refresh_catalog(self, recommender) -> None:
        version = self.store.items_version()
        if version == self._items_version:
            return
        with self._lock:
            if version != self._items_version:
                stored = self.store.item_properties()
                catalog = augment.catalog_with(recommender.catalog, recommender.artifact, stored)
                recommender.catalog, self._items_version = catalog, version


def with_events(records: list) -> list:
    """``/invocations``' decoded records with their users' stored events applied."""
    events: Events | None = current_app.extensions.get(EXTENSION)
    if events is None or events.store is None:
        return records
    recommender = current_app.extensions["mfrec"].require()
    requests = events.augment(
        [r.request if r.error is None else None for r in records], recommender
    )
    return [
        dataclasses.replace(record, request=new) if new is not record.request else record
        for record, new in zip(records, requests, strict=True)
    ]


def with_events_request(request_):
    """One Personalize REST request with its user's stored events applied."""
    events: Events | None = current_app.extensions.get(EXTENSION)
    if events is None or events.store is None:
        return request_
    recommender = current_app.extensions["mfrec"].require()
    return events.augment([request_], recommender)[0]
