"""PutEvents and PutItems bodies (botocore's ``personalize-events`` shapes) read and checked:
every problem is one :class:`~mfrec.serve.personalize_api.InvalidInput` line naming the field.

A PutEvents body: ``{"trackingId", "userId", "sessionId", "eventList": [{"eventId",
"eventType", "eventValue", "itemId", "sentAt", "properties", "recommendationId", "impression",
"metricAttribution"}, ...]}`` (1 to 10 events). The user is ``userId``, else ``sessionId``
(Personalize's anonymous users). An event without ``eventId`` gets one made from its fields, so
a retried call is still stored once. ``recommendationId``, ``impression`` and
``metricAttribution`` are accepted and not used.
"""

from __future__ import annotations

import hashlib
import json
import math

from mfrec.serve.events.store import Event
from mfrec.serve.personalize_api import InvalidInput
from mfrec.serve.requests import RecordError, _id, _text, shown

PUT_EVENTS_FIELDS = frozenset({"trackingId", "userId", "sessionId", "eventList"})
EVENT_FIELDS = frozenset(
    {
        "eventId",
        "eventType",
        "eventValue",
        "itemId",
        "sentAt",
        "properties",
        "recommendationId",
        "impression",
        "metricAttribution",
    }
)
PUT_ITEMS_FIELDS = frozenset({"datasetArn", "items"})
ITEM_FIELDS = frozenset({"itemId", "properties"})
MAX_EVENTS, MAX_ITEMS = 10, 10  # Personalize's limits per call
MAX_PROPERTIES = 1024  # characters of an event's properties (32,000 for an item's)


def _object(body: bytes, operation: str, allowed: frozenset) -> dict:
    try:
        obj = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        raise InvalidInput(f"{operation}: the body must be a JSON object") from None
    if not isinstance(obj, dict):
        raise InvalidInput(f"{operation}: the body must be a JSON object")
    if unknown := sorted(set(obj) - allowed):
        raise InvalidInput(
            f"{operation}: unknown field(s) {', '.join(map(shown, unknown))[:200]}; "
            f"use {', '.join(sorted(allowed))}"
        )
    return obj


def _checked(function, *args):
    try:
        return function(*args)
    except RecordError as exc:
        raise InvalidInput(str(exc)) from None


def _list(obj: dict, name: str, operation: str, most: int) -> list:
    value = obj.get(name)
    if not isinstance(value, list) or not 1 <= len(value) <= most:
        raise InvalidInput(f"{operation}: {name} must be a list of 1 to {most} objects")
    if not all(isinstance(entry, dict) for entry in value):
        raise InvalidInput(f"{operation}: each entry of {name} must be an object")
    return value


def read_put_events(body: bytes) -> list[Event]:
    """The events of a PutEvents body, checked."""
    obj = _object(body, "PutEvents", PUT_EVENTS_FIELDS)
    for name in ("trackingId", "sessionId"):
        if obj.get(name) is None:
            raise InvalidInput(f"PutEvents needs {name}")
    tracking_id = _checked(_id, obj["trackingId"], "trackingId")
    session_id = _checked(_id, obj["sessionId"], "sessionId")
    user_id = _checked(_id, obj["userId"], "userId") if obj.get("userId") is not None else None
    events = []
    for position, entry in enumerate(_list(obj, "eventList", "PutEvents", MAX_EVENTS)):
        where = f"eventList[{position}]"
        if unknown := sorted(set(entry) - EVENT_FIELDS):
            raise InvalidInput(
                f"PutEvents: {where} has unknown field(s) {', '.join(map(shown, unknown))[:200]}"
                f"; use {', '.join(sorted(EVENT_FIELDS))}"
            )
        events.append(_event(entry, where, user_id or session_id, session_id, tracking_id))
    return events


def _event(entry: dict, where: str, user_id: str, session_id: str, tracking_id: str) -> Event:
    if entry.get("eventType") is None or entry.get("sentAt") is None:
        raise InvalidInput(f"PutEvents: {where} needs eventType and sentAt")
    event_type = _checked(_id, entry["eventType"], f"{where}.eventType")
    sent_at = entry["sentAt"]
    if (
        isinstance(sent_at, bool)
        or not isinstance(sent_at, int | float)
        or not (math.isfinite(sent_at) and 0 <= sent_at < 1e11)
    ):
        raise InvalidInput(
            f"PutEvents: {where}.sentAt must be seconds since 1970 (a number), got {shown(sent_at)}"
        )
    value = entry.get("eventValue")
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
    ):
        raise InvalidInput(f"PutEvents: {where}.eventValue must be a number, got {shown(value)}")
    item_id = entry.get("itemId")
    item_id = _checked(_id, item_id, f"{where}.itemId") if item_id is not None else None
    properties = _properties(entry.get("properties"), f"{where}.properties", MAX_PROPERTIES)
    event_id = entry.get("eventId")
    if event_id is None:  # the same event sent twice gets the same id
        key = json.dumps([user_id, session_id, item_id, event_type, value, sent_at, properties])
        event_id = "mfrec-" + hashlib.sha256(key.encode()).hexdigest()[:32]
    event_id = _checked(_id, event_id, f"{where}.eventId")
    return Event(
        event_id,
        user_id,
        item_id,
        event_type,
        None if value is None else float(value),
        float(sent_at),
        session_id,
        tracking_id,
        properties,
    )


def _properties(value, where: str, most: int) -> str | None:
    """A ``properties`` field: JSON text of an object (botocore sends the text)."""
    if value is None:
        return None
    if isinstance(value, dict):  # a client that sent the object itself
        value = json.dumps(value)
    if not isinstance(value, str) or len(value) > most:
        raise InvalidInput(f"{where} must be JSON text of an object, at most {most} characters")
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):
        parsed = None
    if not isinstance(parsed, dict):
        raise InvalidInput(
            f'{where} must be JSON text of an object, like "{{\\"genre\\": \\"x\\"}}"'
        )
    return _checked(_text, value, where)


def read_items(body: bytes) -> dict[str, dict]:
    """item id -> properties (a dict) of a PutItems body, checked."""
    obj = _object(body, "PutItems", PUT_ITEMS_FIELDS)
    if not isinstance(obj.get("datasetArn"), str):
        raise InvalidInput("PutItems needs datasetArn (a string; it is not used)")
    items = {}
    for position, entry in enumerate(_list(obj, "items", "PutItems", MAX_ITEMS)):
        if unknown := sorted(set(entry) - ITEM_FIELDS):
            raise InvalidInput(
                f"PutItems: items[{position}] has unknown field(s) "
                f"{', '.join(map(shown, unknown))[:200]}; use itemId, properties"
            )
        if entry.get("itemId") is None:
            raise InvalidInput(f"PutItems: items[{position}] needs itemId")
        item_id = _checked(_id, entry["itemId"], f"items[{position}].itemId")
        text = _properties(entry.get("properties"), f"items[{position}].properties", 32_000)
        items[item_id] = json.loads(text) if text else {}
    return items
