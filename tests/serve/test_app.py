"""The Flask app through its test client: SageMaker's routes, every format, every error status."""

from __future__ import annotations

import json

import numpy as np
import pytest
from known_answer import NUM_ITEMS, SEED, USER_IDS, known_answer

from mfrec.serve.app import create_app
from mfrec.serve.recommender import Recommender
from mfrec.serve.settings import ServingSettings
from mfrec.train.artifact import save


def rows(user_id: str, top_n: int, exclude_seen: bool = True) -> list[str]:
    """The expected CSV rows of a known user."""
    u = USER_IDS.index(user_id)
    ranking = sorted(range(NUM_ITEMS), key=lambda i: ((u - i) ** 2, i))
    ranking = [i for i in ranking if not (exclude_seen and i == u)][:top_n]
    return [f"{user_id},i{i},{2 * u * i - i * i - i / (2 * NUM_ITEMS):.6f}" for i in ranking]


def make_app(**settings):
    settings = ServingSettings(**settings)
    return create_app(
        Recommender(known_answer(), "cpu", **settings.recommender_options()), settings=settings
    )


@pytest.fixture
def client():
    return make_app().test_client()


def post(client, body, content_type="application/json", accept=None):
    headers = {"Content-Type": content_type} if content_type else {}
    if accept is not None:
        headers["Accept"] = accept
    return client.post("/invocations", data=body, headers=headers)


def test_ping_is_503_until_a_model_is_loaded_then_200():
    app = create_app(settings=ServingSettings())
    client = app.test_client()
    assert (client.get("/ping").status_code, client.get("/ping").text) == (503, "model not loaded")
    response = post(client, SEED)
    assert response.status_code == 503 and "not loaded yet" in response.text
    app.extensions["mfrec"].recommender = Recommender(known_answer(), "cpu")
    assert (client.get("/ping").status_code, client.get("/ping").text) == (200, "")


def test_create_app_loads_a_model_dir(tmp_path):
    save(known_answer(), tmp_path / "model")
    app = create_app(model_dir=tmp_path / "model", settings=ServingSettings(device="cpu"))
    assert app.test_client().get("/ping").status_code == 200


def test_seed_request_gives_the_seed_csv(client):
    response = post(client, SEED, accept="text/csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.text == "\n".join(rows("685", 5) + rows("302", 5))


def test_server_timing_header_says_where_the_time_went(client):
    header = post(client, SEED).headers["Server-Timing"]
    assert [part.split(";dur=")[0] for part in header.split(", ")] == ["decode", "model", "encode"]
    assert all(float(part.split(";dur=")[1]) >= 0 for part in header.split(", "))


def test_missing_or_wildcard_accept_gives_csv(client):
    for accept in (None, "*/*"):
        assert post(client, SEED, accept=accept).text == "\n".join(rows("685", 5) + rows("302", 5))


def assert_single_records_equal_one_body(client, lines: list[bytes]) -> None:
    """Each line posted alone, joined, equals all lines posted as one body, in CSV and JSON
    Lines (AssembleWith=Line: one newline per response)."""
    for accept in ("text/csv", "application/jsonlines"):
        single = [post(client, line, accept=accept).text for line in lines]
        assert "\n".join(single) == post(client, b"\n".join(lines), accept=accept).text


def test_single_record_bodies_equal_one_multi_record_body():
    client = make_app(batch=True).test_client()  # as under batch transform: no 400 answers
    lines = [
        b'{"user_id": "685", "top_n": 2}',
        b'{"user_id": "nobody", "top_n": 2}',
        b'{"user_id": "302", "top_n": "x"}',
        b'{"user_id": "u3"}',
    ]
    assert_single_records_equal_one_body(client, lines)


def test_every_request_type_in_one_body_single_equals_multi_record():
    client = make_app(batch=True).test_client()
    lines = [
        b'{"user_id": "685", "top_n": 2}',
        b'{"item_id": "i2", "top_n": 2}',
        b'{"user_id": "302", "item_ids": ["i3", "nope", "i1"]}',
        b'{"user_id": "new", "history": ["i1", "i2"], "top_n": 2}',
        b'{"top_n": 2}',
        b'{"type": "trending"}',
        b'{"item_id": "i2", "similarity": "cooccurrence", "top_n": 1}',
    ]
    assert_single_records_equal_one_body(client, lines)
    rows_ = post(client, b"\n".join(lines)).text.split("\n")
    assert rows_[:2] == rows("685", 2)
    assert [row.split(",")[0] for row in rows_[2:4]] == ["i2", "i2"]  # similar: the item first
    assert rows_[4:7] == ["302,i1,-1.062500", "302,i3,-9.187500", "302,nope,"]  # unknown: no score
    assert [row.split(",")[0] for row in rows_[7:9]] == ["new", "new"]
    assert rows_[9:11] == [",i0,8.000000", ",i1,7.000000"]
    assert rows_[11].startswith(',,"error: this model has no trending counts')
    assert rows_[12] == "i2,,"  # each user saw one item: nothing co-occurs, no items
    objects = [
        json.loads(line)
        for line in post(client, b"\n".join(lines), accept="application/jsonlines").text.split("\n")
    ]
    assert objects[2]["scores"][-1] is None and objects[2]["type"] == "rank"
    assert objects[1]["item_id"] == "i2" and objects[1]["type"] == "similar_items"


def test_every_request_format_gives_the_same_answer(client):
    want = "\n".join(rows("685", 2) + rows("302", 3))
    bodies = {
        "application/json": [
            b'[{"user_id": "685", "top_n": 2}, {"user_id": 302, "top_n": 3}]',
            b'{"instances": [{"userId": "685", "numResults": 2},'
            b' {"user_id": "302", "top_n": "3"}]}',
        ],
        "application/jsonlines": [
            b'{"user_id": "685", "top_n": 2}\n\n{"userId": "302", "top_n": 3}'
        ],
        "text/csv": [b"685,2\n302,3", b"user_id,top_n\n685,2\n302,3\n"],
    }
    for content_type, examples in bodies.items():
        for body in examples:
            assert post(client, body, content_type, "text/csv").text == want


def test_json_responses(client):
    response = post(client, SEED, accept="application/json")
    assert response.mimetype == "application/json"
    first, second = response.get_json()["predictions"]
    assert first["user_id"] == "685" and len(first["item_ids"]) == 5
    assert [
        f"685,{i},{s:.6f}" for i, s in zip(first["item_ids"], first["scores"], strict=True)
    ] == (rows("685", 5))
    lines = post(client, SEED, accept="application/jsonlines").text.split("\n")
    assert [json.loads(line) for line in lines] == [first, second]


def test_personalize_output_shape(client):
    body = b'{"userId": "685"}\n{"userId": "nobody"}'
    response = post(client, body, accept="application/jsonlines;format=personalize")
    known, unknown = [json.loads(line) for line in response.text.split("\n")]
    assert known["input"] == {"userId": "685"} and known["error"] is None
    assert len(known["output"]["recommendedItems"]) == NUM_ITEMS - 1  # default top_n=25
    assert unknown["output"]["recommendedItems"][:2] == ["i0", "i1"]


def test_unknown_users_get_popular_items_or_error_rows():
    body = b'{"user_id": "nobody", "top_n": 2}\n{"user_id": "685", "top_n": 1}'
    assert post(make_app().test_client(), body).text == "\n".join(
        ["nobody,i0,8.000000", "nobody,i1,7.000000"] + rows("685", 1)
    )
    strict = make_app(unknown_user="error").test_client()
    assert post(strict, body).text == "\n".join(
        ["nobody,,error: user 'nobody' is not in the model"] + rows("685", 1)
    )


def test_exclude_seen_default_and_per_record():
    body = b'{"user_id": "685", "top_n": 2}\n{"user_id": "685", "top_n": 2, "exclude_seen": false}'
    assert post(make_app().test_client(), body).text == "\n".join(
        rows("685", 2) + rows("685", 2, exclude_seen=False)
    )
    keep = make_app(exclude_seen=False).test_client()
    assert post(keep, b'{"user_id": "685", "top_n": 2}').text == "\n".join(
        rows("685", 2, exclude_seen=False)
    )


def test_default_and_max_top_n():
    client = make_app(default_top_n=1, max_top_n=3).test_client()
    assert post(client, b'{"user_id": "685"}').text == rows("685", 1)[0]
    answer = post(client, b'{"user_id": "685", "top_n": 4}\n{"user_id": "302", "top_n": 1}')
    assert answer.text == "\n".join(
        ["685,,error: top_n=4 is out of range; use 1 to 3"] + rows("302", 1)
    )


def test_malformed_records_inside_a_batch_get_error_rows_in_place(client):
    body = (
        b'{"user_id": "685", "top_n": 1}\n{"user_id": "302", "top_n": "many"}\n{oops\n'
        b'{"user_id": "302", "top_n": 1}'
    )
    response = post(client, body)
    assert response.status_code == 200
    assert response.text.split("\n") == [
        rows("685", 1)[0],
        "302,,\"error: top_n must be an integer, got 'many'\"",
        ',,"error: the record is not valid JSON (Expecting property name enclosed in double '
        'quotes at column 2); send one object per line like {""user_id"": ""685"", ""top_n"": '
        '""5""}"',
        rows("302", 1)[0],
    ]


def test_415_406_and_400_are_one_line_reasons(client):
    cases = [
        (post(client, SEED, "application/xml"), 415, "Content-Type 'application/xml' is not"),
        (post(client, SEED, accept="application/xml"), 406, "Accept 'application/xml' is not"),
        (post(client, b"{nope"), 400, "the record is not valid JSON"),
        (post(client, b'{"user_id": "685", "top_n": "x"}'), 400, "top_n must be an integer"),
        (post(client, b""), 400, "the body holds no records"),
    ]
    for response, status, message in cases:
        assert response.status_code == status and message in response.text
        assert "\n" not in response.text and "Traceback" not in response.text


def test_batch_mode_answers_unreadable_bodies_with_error_rows():
    client = make_app(batch=True).test_client()
    assert (post(client, b"{nope").status_code, post(client, b"{nope").text[:30]) == (
        200,
        ',,"error: the record is not va',
    )
    assert (post(client, b"\n").status_code, post(client, b"\n").text) == (200, "")


def test_body_above_max_payload_is_413():
    client = make_app(max_payload_mb=1).test_client()
    response = post(client, b'{"user_id": "685"}\n' * 60_000)  # about 1.1 MB
    assert response.status_code == 413
    assert response.text.startswith("the body is larger than MaxPayloadInMB (1 MB)")


def test_other_http_errors_and_internal_errors_are_one_line(client, monkeypatch, caplog):
    assert client.get("/invocations").status_code == 405
    assert client.get("/nowhere").text.startswith("Not Found: ")
    app = make_app()
    recommender = app.extensions["mfrec"].recommender
    monkeypatch.setattr(recommender, "answer", lambda requests: 1 / 0)
    response = post(app.test_client(), SEED)
    assert (response.status_code, response.text) == (500, "internal error; see the server log")
    assert "ZeroDivisionError" in caplog.text


def test_html_page_shows_recommendations_with_titles_and_escapes_input():
    artifact = known_answer()
    artifact.extra["item_attribute.title"] = np.array([f"Film <{k}>" for k in range(NUM_ITEMS)])
    client = create_app(Recommender(artifact, "cpu"), settings=ServingSettings()).test_client()
    empty = client.get("/")
    assert empty.status_code == 200 and '<input name="user_id"' in empty.text
    page = client.get("/?user_id=685&top_n=2").text
    assert "Recommendations for 685" in page and "Film &lt;0&gt;" in page
    assert page.index("<td>i0</td>") < page.index("<td>i2</td>")  # rows("685", 2): i0, i2
    similar = client.get("/?item_id=i3&top_n=1").text
    assert "Items like i3" in similar and "<td>i4</td>" in similar  # cos((3, 9), (4, 16))
    hostile = client.get("/?user_id=<script>x</script>").text
    assert "<script>x" not in hostile and "&lt;script&gt;x" in hostile
    assert "top_n must be an integer" in client.get("/?user_id=685&top_n=lots").text


def test_execution_parameters_fit_the_workers():
    params = make_app(workers=3).test_client().get("/execution-parameters").get_json()
    assert params == {
        "MaxConcurrentTransforms": 3,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 1,  # small bodies: every worker gets some
    }
    app = make_app(
        workers=3, max_concurrent_transforms=2, batch_strategy="SINGLE_RECORD", batch_payload_mb=20
    )
    assert app.test_client().get("/execution-parameters").get_json() == {
        "MaxConcurrentTransforms": 2,
        "BatchStrategy": "SINGLE_RECORD",
        "MaxPayloadInMB": 20,
    }
