"""Amazon Personalize's runtime REST paths (mfrec.serve.personalize_api) on the known-answer
model: the same answers as the same bodies on /invocations, Personalize's rest-json error shape,
and, where botocore is installed, boto3's own personalize-runtime client against mfrec serve."""

from __future__ import annotations

import json

import numpy as np
import pytest
from known_answer import known_answer

from mfrec.local_server import LocalServer
from mfrec.serve.app import create_app
from mfrec.serve.recommender import Recommender
from mfrec.serve.settings import ServingSettings
from mfrec.train.artifact import ATTRIBUTE_PREFIX, save

GENRE = ["Comedy", "Comedy|Drama", "Drama", "Horror", "Comedy", "Drama", "Horror", ""]
NO_COMEDY = 'EXCLUDE ItemID WHERE Items.GENRE IN ("Comedy")'
ARN = "arn:aws:personalize:us-east-1:123456789012:filter/no-comedy"
CAMPAIGN = "arn:aws:personalize:us-east-1:123456789012:campaign/movies"


def artifact():
    model = known_answer()
    model.extra[ATTRIBUTE_PREFIX + "GENRE"] = np.array(GENRE)
    return model


@pytest.fixture(scope="module")
def client():
    settings = ServingSettings()
    recommender = Recommender(artifact(), "cpu", **settings.recommender_options())
    return create_app(recommender, settings=settings).test_client()


@pytest.fixture
def named_filters(tmp_path, monkeypatch):
    path = tmp_path / "filters.json"
    path.write_text(json.dumps({"no-comedy": NO_COMEDY}))
    monkeypatch.setenv("MFREC_FILTERS", str(path))


def without_id(body: dict) -> dict:
    assert body.pop("recommendationId").startswith("RID-")
    return body


def both_doors(client, path: str, record: dict) -> tuple[dict, dict]:
    """The answers to ``record`` on ``path`` and on /invocations (both must be 200)."""
    rest = client.post(path, json=record)
    invoked = client.post("/invocations", json=record, headers={"Accept": "application/json"})
    assert rest.status_code == 200 and invoked.status_code == 200, (rest.text, invoked.text)
    return without_id(rest.get_json()), without_id(invoked.get_json())


def assert_error(response, status: int, code: str, words: str) -> None:
    assert response.status_code == status
    assert response.headers["x-amzn-ErrorType"] == code
    body = response.get_json()
    assert body["__type"] == code and words in body["message"]
    assert "\n" not in body["message"] and "Traceback" not in body["message"]


@pytest.mark.parametrize(
    "record",
    [
        {"userId": "685", "numResults": 3, "campaignArn": CAMPAIGN},
        {"itemId": "i2", "numResults": 4, "recommenderArn": CAMPAIGN},
        {"numResults": 2},
        {"userId": "302", "numResults": 3, "context": {"DEVICE": "mobile"}},
    ],
    ids=["user", "related-items", "popular", "context"],
)
def test_recommendations_answer_as_invocations(client, record):
    rest, invoked = both_doors(client, "/recommendations", record)
    assert list(rest) == ["itemList"] and rest == invoked
    assert len(rest["itemList"]) == record["numResults"]


def test_recommendations_user_685_known_order(client):
    body = client.post("/recommendations", json={"userId": "685", "numResults": 3}).get_json()
    assert [entry["itemId"] for entry in body["itemList"]] == ["i0", "i2", "i3"]


def test_personalized_ranking_unknown_items_last_as_invocations(client):
    record = {"userId": "685", "inputList": ["i5", "zz", "i1", "i0"], "campaignArn": CAMPAIGN}
    rest, invoked = both_doors(client, "/personalize-ranking", record)
    assert rest == invoked and list(rest) == ["personalizedRanking"]
    ranked = rest["personalizedRanking"]
    assert [entry["itemId"] for entry in ranked] == ["i1", "i0", "i5", "zz"]
    assert ranked[-1]["score"] == 0


def test_filter_arn_by_full_arn_and_unknown_arn_is_not_found(client, named_filters):
    rest, invoked = both_doors(
        client, "/recommendations", {"userId": "302", "numResults": 3, "filterArn": ARN}
    )
    assert rest == invoked
    assert not {entry["itemId"] for entry in rest["itemList"]} & {"i0", "i1", "i4"}  # comedies
    missing = client.post("/recommendations", json={"userId": "302", "filterArn": "other"})
    assert_error(missing, 404, "ResourceNotFoundException", "'other'")


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("/recommendations", b"{not json", "JSON object"),
        ("/recommendations", b"[1, 2]", "JSON object"),
        ("/recommendations", {"userId": "685", "numResults": 0}, "numResults"),
        ("/recommendations", {"userId": "685", "numResults": "many"}, "numResults"),
        ("/recommendations", {"userId": "685", "top_n": 3}, "'top_n'"),
        ("/recommendations", {"userId": "685", "inputList": ["i1"]}, "'inputList'"),
        ("/recommendations", {"userId": "685", "promotions": []}, "promotions is not supported"),
        ("/recommendations", {"userId": "685", "filterValues": {"G": '"x"'}}, "filterValues"),
        ("/recommendations", {"userId": "685", "filterExpression": "INCLUDE"}, "filter"),
        ("/recommendations", b'{"numResults": ' + b"9" * 5000 + b"}", "JSON object"),
        ("/recommendations", b"[" * 100_000 + b"]" * 100_000, "JSON object"),
        ("/recommendations", {"userId": "685", "numResults": 10**40}, "numResults"),
        ("/recommendations", b"\xff\xfe", "JSON object"),
        ("/recommendations", b'{"userId": "\\ud800"}', "surrogate"),
        ("/personalize-ranking", {"userId": "685"}, "inputList"),
        ("/personalize-ranking", {"userId": "685", "inputList": "i1"}, "inputList"),
        ("/action-recommendations", {"userId": "685"}, "not supported"),
    ],
)
def test_bad_requests_are_invalid_input_exceptions(client, path, body, words):
    if isinstance(body, bytes):
        response = client.post(path, data=body, content_type="application/json")
    else:
        response = client.post(path, json=body)
    assert_error(response, 400, "InvalidInputException", words)


def test_model_not_loaded_is_503_in_personalize_shape():
    empty = create_app(settings=ServingSettings()).test_client()
    response = empty.post("/recommendations", json={"userId": "685"})
    assert_error(response, 503, "ModelNotLoaded", "/ping")


# --- boto3's own client against mfrec serve ---------------------------------------------------


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    botocore = pytest.importorskip("botocore")
    boto3 = pytest.importorskip("boto3")
    folder = tmp_path_factory.mktemp("personalize_api")
    (folder / "filters.json").write_text(json.dumps({"no-comedy": NO_COMEDY}))
    env = {"MFREC_DEVICE": "cpu", "MFREC_FILTERS": str(folder / "filters.json")}
    model_dir = save(artifact(), folder / "model")
    with (
        open(folder / "server.log", "w+") as log,
        LocalServer(model_dir, workers=1, env=env, stdout=log, stderr=log) as server,
    ):
        config = botocore.config.Config(retries={"max_attempts": 1})
        yield boto3.client(
            "personalize-runtime",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
            config=config,
        )


def test_boto3_get_recommendations_with_a_named_filter(runtime):
    plain = runtime.get_recommendations(campaignArn=CAMPAIGN, userId="685", numResults=3)
    assert [entry["itemId"] for entry in plain["itemList"]] == ["i0", "i2", "i3"]
    assert plain["recommendationId"].startswith("RID-")
    filtered = runtime.get_recommendations(campaignArn=CAMPAIGN, userId="302", filterArn=ARN)
    assert filtered["itemList"]
    assert not {entry["itemId"] for entry in filtered["itemList"]} & {"i0", "i1", "i4"}


def test_boto3_get_personalized_ranking_unknown_items_last(runtime):
    ranked = runtime.get_personalized_ranking(
        campaignArn=CAMPAIGN, userId="685", inputList=["i5", "zz", "i1", "i0"]
    )["personalizedRanking"]
    assert [entry["itemId"] for entry in ranked] == ["i1", "i0", "i5", "zz"]


def test_boto3_raises_the_modelled_exceptions(runtime):
    with pytest.raises(runtime.exceptions.InvalidInputException, match="numResults"):
        runtime.get_recommendations(campaignArn=CAMPAIGN, userId="685", numResults=501)
    with pytest.raises(runtime.exceptions.ResourceNotFoundException, match="'missing'"):
        runtime.get_recommendations(campaignArn=CAMPAIGN, userId="685", filterArn="missing")
    with pytest.raises(runtime.exceptions.InvalidInputException, match="not supported"):
        runtime.get_action_recommendations(campaignArn=CAMPAIGN, userId="685")
