"""Amazon Personalize's real-time shapes through the app (mfrec.serve.personalize,
mfrec.serve.probabilities) on the known-answer model: every response shape with its [0, 1]
scores computed from the model's formula, MultiRecord bodies, filters by expression and by
name, and filter errors as 400s or error lines, never 500s."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from known_answer import NUM_ITEMS, USER_IDS, known_answer

from mfrec.serve.app import create_app
from mfrec.serve.probabilities import significant
from mfrec.serve.recommender import Recommender
from mfrec.serve.settings import ServingSettings
from mfrec.train.artifact import ATTRIBUTE_PREFIX

RID = re.compile(r"^RID-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
GENRE = ["Comedy", "Comedy|Drama", "Drama", "Horror", "Comedy", "Drama", "Horror", ""]
POPULARITY = np.arange(NUM_ITEMS, 0, -1, dtype=np.float64)  # item i: num_items - i


def model_scores(user_id: str) -> np.ndarray:
    """The known-answer model's score of every item for a user (tests/known_answer.py)."""
    u, i = USER_IDS.index(user_id), np.arange(NUM_ITEMS, dtype=np.float64)
    return 2 * u * i - i * i - i / (2 * NUM_ITEMS)


def softmax(scores: np.ndarray) -> np.ndarray:
    e = np.exp(scores - scores.max())
    return e / e.sum()


def make_client(batch: bool = False):
    artifact = known_answer()
    artifact.extra[ATTRIBUTE_PREFIX + "GENRE"] = np.array(GENRE)
    settings = ServingSettings(batch=batch)
    recommender = Recommender(artifact, "cpu", **settings.recommender_options())
    return create_app(recommender, settings=settings).test_client()


@pytest.fixture(scope="module")
def client():
    return make_client()


def post(client, body, accept="application/json", content_type="application/json"):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    headers = {"Content-Type": content_type, "Accept": accept}
    return client.post("/invocations", data=body, headers=headers)


def answer(client, record: dict) -> dict:
    response = post(client, record)
    assert response.status_code == 200, response.text
    return response.get_json()


def items(listed: list[dict]) -> tuple[list[str], list[float]]:
    return [entry["itemId"] for entry in listed], [entry["score"] for entry in listed]


def test_get_recommendations_scores_are_the_softmax_over_the_catalogue(client):
    got = answer(client, {"userId": "685", "numResults": 3})
    assert set(got) == {"itemList", "recommendationId"} and RID.match(got["recommendationId"])
    ids, scores = items(got["itemList"])
    probabilities = softmax(model_scores("685"))  # over all 8 items, the seen i1 included
    assert ids == ["i0", "i2", "i3"]  # |1 - i| order, i1 (seen in training) left out
    assert scores == pytest.approx(probabilities[[0, 2, 3]], rel=1e-5)
    everything = answer(client, {"userId": "685", "numResults": NUM_ITEMS})
    assert sum(items(everything["itemList"])[1]) + probabilities[1] == pytest.approx(1, rel=1e-5)
    assert all("reason" not in entry for entry in everything["itemList"])


def test_personalized_ranking_softmax_over_the_input_items_unknown_last_with_0(client):
    got = answer(client, {"userId": "685", "inputList": ["i5", "zz", "i1", "i0"]})
    assert set(got) == {"personalizedRanking", "recommendationId"}
    ids, scores = items(got["personalizedRanking"])
    assert ids == ["i1", "i0", "i5", "zz"]
    want = softmax(model_scores("685")[[1, 0, 5]])
    assert scores[:3] == pytest.approx(want, rel=1e-5) and scores[3] == 0.0
    assert sum(scores) == pytest.approx(1, rel=1e-5)


def test_related_items_scores_are_half_of_one_plus_the_cosine(client):
    ids, scores = items(answer(client, {"itemId": "i2", "numResults": 3})["itemList"])
    i = np.arange(NUM_ITEMS, dtype=np.float64)
    vectors = np.stack([i, i * i], 1)
    norms = np.maximum(np.linalg.norm(vectors, axis=1), 1e-12)
    cosine = vectors @ vectors[2] / (norms * norms[2])
    order = [k for k in np.argsort(-cosine, kind="stable") if k != 2][:3]
    assert ids == [f"i{k}" for k in order]
    assert scores == pytest.approx((1 + cosine[order]) / 2, rel=1e-5)


def test_popularity_answers_are_shares_of_interactions_marked_popular_item(client):
    for record in ({"userId": "nobody", "numResults": 3}, {"numResults": 3}):
        listed = answer(client, record)["itemList"]
        assert items(listed) == (["i0", "i1", "i2"], pytest.approx(POPULARITY[:3] / 36, rel=1e-5))
        assert all(entry["reason"] == ["Popular item"] for entry in listed)
    ranked = answer(client, {"inputList": ["i3", "i1", "gone"]})["personalizedRanking"]
    assert items(ranked) == (["i1", "i3", "gone"], pytest.approx([7 / 12, 5 / 12, 0]))
    related = answer(client, {"itemId": "gone", "numResults": 1})["itemList"]
    assert related[0]["reason"] == ["Popular item"]


def test_context_and_arns_are_accepted_and_ignored(client):
    plain = answer(client, {"userId": "302", "numResults": 2})
    extra = answer(
        client,
        {
            "userId": "302",
            "numResults": 2,
            "context": {"DEVICE": "mobile"},
            "campaignArn": "arn:aws:personalize:us-east-1:1:campaign/c",
            "recommenderArn": "arn:aws:personalize:us-east-1:1:recommender/r",
        },
    )
    assert extra["itemList"] == plain["itemList"]
    assert extra["recommendationId"] != plain["recommendationId"]


def test_multirecord_bodies_answer_one_line_per_record(client):
    records = [
        {"userId": "685", "numResults": 2},
        {"itemId": "i1"},
        {"userId": "302", "inputList": ["i1"]},
    ]
    body = "\n".join(json.dumps(r) for r in records).encode()
    for accept in ("application/json", "application/jsonlines"):
        lines = [json.loads(line) for line in post(client, body, accept).text.split("\n")]
        assert [next(iter(line)) for line in lines] == [
            "itemList",
            "itemList",
            "personalizedRanking",
        ]
        assert len({line["recommendationId"] for line in lines}) == 3
    array = post(client, json.dumps(records).encode()).text.split("\n")
    assert len(array) == 3


def test_mfrec_fields_keep_mfrec_shapes_and_scores(client):
    mfrec = post(client, b'{"user_id": "685", "top_n": 2}').get_json()
    assert mfrec["predictions"][0]["scores"] == [0.0, -0.125]  # raw model scores
    mixed = post(client, b'{"user_id": "685", "top_n": 1}\n{"userId": "685", "numResults": 1}')
    first, second = mixed.get_json()["predictions"]
    assert first["item_ids"] == ["i0"] and second["itemList"][0]["itemId"] == "i0"
    csv = post(client, b'{"userId": "685", "numResults": 2}', accept="text/csv").text
    assert csv == "685,i0,0.000000\n685,i2,-0.125000"  # CSV rows keep the model's scores


def test_batch_output_shape_carries_the_0_1_scores(client):
    line = post(
        client, b'{"userId": "685", "numResults": 2}', "application/jsonlines;format=personalize"
    )
    output = json.loads(line.text)["output"]
    assert output["recommendedItems"] == ["i0", "i2"]
    assert output["scores"] == pytest.approx(softmax(model_scores("685"))[[0, 2]], rel=1e-5)


def test_filter_expression_and_values_with_personalize_quoting(client):
    record = {
        "userId": "685",
        "numResults": 5,
        "filterExpression": "INCLUDE ItemID WHERE Items.GENRE IN ($GENRE)",
        "filterValues": {"GENRE": '"Drama","Horror"'},
    }
    ids, _ = items(answer(client, record)["itemList"])
    assert ids == ["i2", "i3", "i5", "i6"]  # Drama or Horror, i1 seen; fewer than numResults
    record["filterExpression"] += ' | EXCLUDE ItemID WHERE Items.GENRE IN ("Horror")'
    assert items(answer(client, record)["itemList"])[0] == ["i2", "i5"]
    mfrec = {
        "user_id": "685",
        "filter_expression": 'EXCLUDE ItemID WHERE Items.GENRE IN ("Comedy")',
    }
    assert post(client, json.dumps(mfrec).encode()).get_json()["predictions"][0]["item_ids"] == [
        "i2",
        "i3",
        "i5",
        "i6",
        "i7",
    ]


def test_filter_arn_from_the_deployment_file(client, tmp_path, monkeypatch):
    path = tmp_path / "filters.json"
    path.write_text(json.dumps({"no-comedy": 'EXCLUDE ItemID WHERE Items.GENRE IN ("Comedy")'}))
    monkeypatch.setenv("MFREC_FILTERS", str(path))
    arn = "arn:aws:personalize:us-east-1:123456789012:filter/no-comedy"
    ids, _ = items(answer(client, {"userId": "302", "numResults": 3, "filterArn": arn})["itemList"])
    assert ids == ["i2", "i3", "i5"]  # user 302 saw i0; i1 and i4 are comedies
    unknown = post(client, {"userId": "302", "filterArn": "other"})
    assert (
        unknown.status_code == 400 and "'other' is not a filter of this deployment" in unknown.text
    )


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            {"userId": "685", "filterExpression": "INCLUDE ItemID WHER"},
            "filter: expected WHERE at column 16",
        ),
        (
            {"userId": "685", "filterExpression": "INCLUDE ItemID WHERE Items.GENRE IN ($G)"},
            "filter: filterValues has no value for \\$G",
        ),
        (
            {
                "userId": "685",
                "filterExpression": 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")',
            },
            "not supported by this model",
        ),
        ({"userId": "685", "context": "mobile"}, "context must be an object"),
        (
            {"user_id": "685", "inputList": ["i1"]},
            "mixes Amazon Personalize's fields \\(inputList\\)",
        ),
        ({"itemId": "i1", "inputList": ["i1"]}, "inputList .* or itemId .*, not both"),
        ({"userId": ["685"]}, "userId must be a non-empty string"),
    ],
)
def test_bad_records_are_400_with_one_line_never_500(client, record, message):
    response = post(client, record)
    assert response.status_code == 400 and "\n" not in response.text
    assert re.search(message, response.text), response.text


def test_a_bad_filter_among_good_records_is_one_error_line():
    body = b'{"userId": "685", "numResults": 1}\n{"userId": "685", "filterExpression": "EXCLUDE"}'
    for client in (make_client(), make_client(batch=True)):
        good, bad = [json.loads(line) for line in post(client, body).text.split("\n")]
        assert good["itemList"][0]["itemId"] == "i0"
        assert bad == {
            "error": "filter: expected ItemID at column 8, found the end of the expression"
        }
    single = post(make_client(batch=True), b'{"userId": "685", "filterExpression": "EXCLUDE"}')
    assert single.status_code == 200 and "error" in single.get_json()


def test_an_unknown_attribute_is_an_error_answer_not_a_500(client):
    record = {"userId": "685", "filterExpression": 'INCLUDE ItemID WHERE Items.COLOR IN ("red")'}
    response = post(client, record)
    assert response.status_code == 200
    assert "no item attribute 'COLOR' (it has: GENRE)" in response.get_json()["error"]


def test_scores_keep_six_significant_digits():
    got = significant(np.array([0.000123456789, 0.5, 0.0, 1.0, 0.99999949]))
    assert got.tolist() == [0.000123457, 0.5, 0.0, 1.0, 0.999999]
