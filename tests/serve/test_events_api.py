"""Personalize's events API (mfrec.serve.events.routes) on the known-answer model with the Flask
client: PutEvents changes the user's next answer on both doors, PutItems changes what filters
see, PutUsers is refused clearly, and every bad body is one InvalidInputException line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from known_answer import known_answer

from mfrec.serve.app import create_app
from mfrec.serve.events.service import EXTENSION
from mfrec.serve.events.store import EventStoreError
from mfrec.serve.recommender import Recommender
from mfrec.serve.settings import ServingSettings
from mfrec.train.artifact import ATTRIBUTE_PREFIX

GENRE = ["Comedy", "Comedy|Drama", "Drama", "Horror", "Comedy", "Drama", "Horror", ""]
DATASET = "arn:aws:personalize:us-east-1:123456789012:dataset/movies/ITEMS"


def make_client(monkeypatch, tmp_path, db: str | None = None):
    monkeypatch.setenv("MFREC_EVENTS_DB", db or str(tmp_path / "events.sqlite"))
    model = known_answer()
    model.extra[ATTRIBUTE_PREFIX + "GENRE"] = np.array(GENRE)
    settings = ServingSettings()
    recommender = Recommender(model, "cpu", **settings.recommender_options())
    return create_app(recommender, settings=settings).test_client()


@pytest.fixture
def client(monkeypatch, tmp_path):
    return make_client(monkeypatch, tmp_path)


def put_events(client, user_id, items, session="s1", **fields):
    events = [
        {"eventType": "click", "sentAt": 1_700_000_000 + k, "itemId": item, **fields}
        for k, item in enumerate(items)
    ]
    body = {"trackingId": "t1", "sessionId": session, "eventList": events}
    if user_id is not None:
        body["userId"] = user_id
    return client.post("/events", json=body)


def recommended(client, user_id, n=8, **fields) -> list[str]:
    response = client.post("/recommendations", json={"userId": user_id, "numResults": n, **fields})
    assert response.status_code == 200, response.text
    return [entry["itemId"] for entry in response.get_json()["itemList"]]


def invoked(client, record) -> list[str]:
    response = client.post("/invocations", json=record, headers={"Accept": "application/json"})
    assert response.status_code == 200, response.text
    return response.get_json()["predictions"][0]["item_ids"]


def assert_invalid(response, words: str) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["x-amzn-ErrorType"] == "InvalidInputException"
    message = response.get_json()["message"]
    assert words in message and "\n" not in message


def test_a_new_user_is_folded_in_from_stored_events(client):
    before = recommended(client, "new-1")  # unknown: the popularity list
    assert before == [f"i{k}" for k in range(8)]
    response = put_events(client, "new-1", ["i6", "i7"])
    assert response.status_code == 200 and response.get_json() == {"stored": 2, "repeated": 0}
    after = recommended(client, "new-1")
    assert after != before[: len(after)] and not {"i6", "i7"} & set(after)
    assert after[0] == "i5"  # the fold-in lands near the items it was given (|u - i| order)
    assert invoked(client, {"user_id": "new-1", "top_n": 6}) == after[:6]


def test_a_known_users_events_extend_the_history_and_are_excluded(client):
    before = recommended(client, "685", n=3)
    put_events(client, "685", [before[0], before[1]])
    after = recommended(client, "685", n=3)
    assert not {before[0], before[1]} & set(after)
    assert "i1" not in after  # the training item stays excluded


def test_similar_items_leave_out_stored_items_only_when_asked(client):
    put_events(client, "new-2", ["i3"])
    asked = {"item_id": "i2", "user_id": "new-2", "top_n": 7, "exclude_seen": True}
    assert "i3" not in invoked(client, asked)
    assert "i3" in invoked(client, {**asked, "exclude_seen": False})


def test_anonymous_events_belong_to_the_session(client):
    put_events(client, None, ["i7"], session="anon-9")
    assert "i7" not in recommended(client, "anon-9")


def test_repeated_event_ids_are_stored_once(client):
    first = put_events(client, "new-3", ["i4"], eventId="e-1")
    again = put_events(client, "new-3", ["i4"], eventId="e-1")
    assert first.get_json()["stored"] == 1 and again.get_json() == {"stored": 0, "repeated": 1}
    without_ids = [put_events(client, "new-3", ["i5"]).get_json() for _ in range(2)]
    assert without_ids == [{"stored": 1, "repeated": 0}, {"stored": 0, "repeated": 1}]


def test_put_items_changes_what_filters_see_and_reports_unknowns(client, tmp_path, monkeypatch):
    path = tmp_path / "filters.json"
    path.write_text(json.dumps({"no-horror": 'EXCLUDE ItemID WHERE Items.GENRE IN ("Horror")'}))
    monkeypatch.setenv("MFREC_FILTERS", str(path))
    arn = "arn:aws:personalize:us-east-1:123456789012:filter/no-horror"
    assert "i0" in recommended(client, "u3", filterArn=arn)
    items = [
        {"itemId": "i0", "properties": json.dumps({"genre": ["Horror", "Drama"], "year": 1999})},
        {"itemId": "new-item", "properties": json.dumps({"genre": "Comedy"})},
    ]
    response = client.post("/items", json={"datasetArn": DATASET, "items": items})
    assert response.status_code == 200
    assert response.get_json() == {
        "stored": 1,
        "unknownItems": ["new-item"],
        "unknownFields": ["year"],
    }
    assert response.headers["x-mfrec-unknown-items"] == "new-item"
    assert "i0" not in recommended(client, "u3", filterArn=arn)
    assert "i6" not in recommended(client, "u3", filterArn=arn)


def test_unknown_item_ids_reach_the_header_percent_encoded(client):
    items = [{"itemId": "caf\u00e9\nx", "properties": "{}"}, {"itemId": "a b", "properties": "{}"}]
    response = client.post("/items", json={"datasetArn": DATASET, "items": items})
    assert response.status_code == 200
    assert response.headers["x-mfrec-unknown-items"] == "caf%C3%A9%0Ax,a%20b"


def test_put_users_is_not_supported(client):
    body = {"datasetArn": DATASET, "users": [{"userId": "u1", "properties": "{}"}]}
    assert_invalid(client.post("/users", json=body), "PutUsers is not supported")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"not json", "must be a JSON object"),
        ({"trackingId": "t", "eventList": []}, "needs sessionId"),
        ({"trackingId": "t", "sessionId": "s", "eventList": []}, "list of 1 to 10"),
        ({"trackingId": "t", "sessionId": "s", "eventList": [{"eventType": "x"}] * 11}, "1 to 10"),
        ({"trackingId": "t", "sessionId": "s", "eventList": [{"sentAt": 1}]}, "needs eventType"),
        (
            {"trackingId": "t", "sessionId": "s", "eventList": [{"eventType": "x", "sentAt": "x"}]},
            "sentAt must be seconds since 1970",
        ),
        (
            {
                "trackingId": "t",
                "sessionId": "s",
                "eventList": [{"eventType": "x", "sentAt": 1e300}],
            },
            "sentAt must be seconds since 1970",
        ),
        (
            {
                "trackingId": "t",
                "sessionId": "s",
                "eventList": [{"eventType": "x", "sentAt": 1, "eventValue": "high"}],
            },
            "eventValue must be a number",
        ),
        (
            {
                "trackingId": "t",
                "sessionId": "s",
                "eventList": [{"eventType": "x", "sentAt": 1, "properties": "[1]"}],
            },
            "must be JSON text of an object",
        ),
        (
            {
                "trackingId": "t",
                "sessionId": "s",
                "eventList": [{"eventType": "x", "sentAt": 1}],
                "extra": 1,
            },
            "unknown field(s) 'extra'",
        ),
        (
            {
                "trackingId": "t",
                "sessionId": "s",
                "eventList": [{"eventType": "x", "sentAt": 1, "itemID": "i1"}],
            },
            "eventList[0] has unknown field(s) 'itemID'",
        ),
        (
            {
                "trackingId": "t",
                "sessionId": "s",
                "userId": "x" * 300,
                "eventList": [{"eventType": "x", "sentAt": 1}],
            },
            "userId has 300 characters",
        ),
    ],
    ids=[
        "not-json",
        "no-session",
        "empty-list",
        "eleven-events",
        "no-event-type",
        "text-sent-at",
        "huge-sent-at",
        "text-value",
        "properties-not-object",
        "unknown-field",
        "unknown-event-field",
        "long-user-id",
    ],
)
def test_bad_put_events_are_invalid_input(client, body, words):
    if isinstance(body, bytes):
        response = client.post("/events", data=body, content_type="application/json")
    else:
        response = client.post("/events", json=body)
    assert_invalid(response, words)


def test_bad_put_items_are_invalid_input(client):
    assert_invalid(client.post("/items", json={"items": []}), "needs datasetArn")
    assert_invalid(
        client.post("/items", json={"datasetArn": DATASET, "items": [{"properties": "{}"}]}),
        "needs itemId",
    )


def test_events_off_says_how_to_turn_them_on(monkeypatch, tmp_path):
    client = make_client(monkeypatch, tmp_path, db="off")
    assert_invalid(put_events(client, "u", ["i1"]), "events are off on this server")
    assert recommended(client, "685", n=2)  # recommendations work without events


def test_an_unusable_store_is_503_for_writes_and_ignored_for_reads(client, caplog):
    store = client.application.extensions[EXTENSION].store

    def broken(*args):
        raise EventStoreError("cannot store events in the events database x: locked")

    store.put_events, store.histories = broken, broken
    response = put_events(client, "u", ["i1"])
    assert response.status_code == 503
    assert response.headers["x-amzn-ErrorType"] == "ServiceUnavailableException"
    assert "locked" in response.get_json()["message"]
    assert recommended(client, "685", n=2)
    assert "answering without stored events" in caplog.text
