"""Amazon Personalize's events API on ``mfrec serve`` (botocore's ``personalize-events``
model, rest-json), and the hook through which stored events reach recommendations.

=====================  ===========  ===========================================================
Path                   Operation    What mfrec does
=====================  ===========  ===========================================================
``POST /events``       PutEvents    stores the events (idempotent on ``eventId``); the user's
                                    next recommendation uses them (:mod:`.augment`)
``POST /items``        PutItems     replaces the metadata filters read, for items the model
                                    knows; unknown items and fields are reported, not stored
``POST /users``        PutUsers     400 ``InvalidInputException``: not supported (no user
                                    metadata, so no ``CurrentUser`` filters)
=====================  ===========  ===========================================================

Errors use Personalize's rest-json shape (:mod:`mfrec.serve.personalize_api`); a database that
cannot be used is a 503 that botocore retries, with a message naming the database.
"""

from __future__ import annotations

import json
import logging
import os
from urllib.parse import quote

from flask import Blueprint, Flask, Response, current_app, request

from mfrec.serve import auth, codecs
from mfrec.serve.events import ENV_DB, MODEL_DIR, augment, max_per_user, open_store, store_location
from mfrec.serve.events.ingest import read_items, read_put_events
from mfrec.serve.events.service import EXTENSION, Events, EventsOff
from mfrec.serve.events.store import EventStore, EventStoreError
from mfrec.serve.personalize_api import InvalidInput, PersonalizeError, personalize_error

logger = logging.getLogger(__name__)

blueprint = Blueprint("personalize_events", __name__)
blueprint.before_request(auth.require_signature)  # SigV4 (MFREC_AUTH_KEYS)
blueprint.register_error_handler(codecs.HttpError, personalize_error)


class StoreUnavailable(PersonalizeError):
    status, code = 503, "ServiceUnavailableException"


def install(app: Flask, model_dir=None) -> None:
    """Open the events store (``MFREC_EVENTS_DB``; beside ``model_dir`` by default) and serve
    the events API; with no store location (events off, or an app made in Python without a
    model folder or ``MFREC_EVENTS_DB``), the API answers that events are off.

    Raises
    ------
    EventStoreError
        The store cannot be opened: the server does not start, and the message says why.
    ConfigError
        ``MFREC_AUTH_KEYS`` is bad (:mod:`mfrec.serve.auth`).
    """
    auth.install(app)  # MFREC_AUTH_KEYS, for these paths and Personalize's runtime paths
    configured = model_dir or os.environ.get(ENV_DB, "").strip() or os.environ.get(MODEL_DIR)
    location = store_location(model_dir=model_dir) if configured else None
    store = open_store(location, max_per_user()) if location else None
    if store is not None:
        logger.info("events stored in %s (%d so far)", store.location, store.count())
    app.extensions[EXTENSION] = Events(store)
    app.register_blueprint(blueprint)


def _store() -> EventStore:
    try:
        return current_app.extensions[EXTENSION].require()
    except EventsOff as exc:
        raise InvalidInput(str(exc)) from None


def _stored(function, *args):
    try:
        return function(*args)
    except EventStoreError as exc:
        logger.error("%s", exc)
        raise StoreUnavailable(str(exc)) from None


@blueprint.post("/events")
def put_events():
    events = read_put_events(request.get_data(cache=False))
    added = _stored(_store().put_events, events)
    body = {"stored": added, "repeated": len(events) - added}
    return Response(json.dumps(body), mimetype="application/json")


@blueprint.post("/items")
def put_items():
    recommender = current_app.extensions["mfrec"].require()
    items = read_items(request.get_data(cache=False))
    known, unknown_items, unknown_fields = {}, [], set()
    names = recommender.catalog.attribute_names()
    for item_id, properties in items.items():
        if item_id not in recommender.catalog.index:
            unknown_items.append(item_id)
            continue
        values = augment.attribute_for(properties, names)
        unknown_fields.update(values.pop(None, ()))
        known[item_id] = values
    if known:
        _stored(_store().put_items, known)
    headers = {}
    if unknown_items or unknown_fields:
        logger.warning(
            "PutItems: not stored: items not in the model %s, fields the model has no attribute "
            "for %s (the model's: %s)",
            unknown_items[:10],
            sorted(unknown_fields)[:10],
            names,
        )
        # percent-encoded: an id may hold any character, a header only printable ASCII
        headers["x-mfrec-unknown-items"] = quote(",".join(unknown_items), safe=",")[:1000]
    body = {
        "stored": len(known),
        "unknownItems": unknown_items,
        "unknownFields": sorted(unknown_fields),
    }
    return Response(json.dumps(body), mimetype="application/json", headers=headers)


@blueprint.post("/users")
def put_users():
    request.get_data(cache=False)  # read, so a kept-alive connection holds no stray bytes
    raise InvalidInput(
        "PutUsers is not supported: mfrec models keep no user metadata, so CurrentUser filters "
        "are refused; send the user's interactions with PutEvents (POST /events)"
    )
