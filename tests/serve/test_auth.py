"""SigV4 on Personalize's paths (mfrec.serve.auth), with requests signed by botocore's own
signer as boto3 signs them: the right key passes; a wrong secret, an unknown key, no signature,
a stale timestamp or a changed body is a 403 in Personalize's shape; /ping and /invocations
stay open; without MFREC_AUTH_KEYS only loopback clients are answered."""

from __future__ import annotations

import datetime
import json

import pytest
from known_answer import known_answer

from mfrec.serve.app import create_app
from mfrec.serve.auth import read_keys
from mfrec.serve.recommender import Recommender
from mfrec.serve.settings import ServingSettings
from mfrec.train.errors import ConfigError

botocore_auth = pytest.importorskip("botocore.auth")
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

BODY = json.dumps({"userId": "685", "numResults": 3}).encode()


def make_client(monkeypatch, keys: str | None):
    if keys is None:
        monkeypatch.delenv("MFREC_AUTH_KEYS", raising=False)
    else:
        monkeypatch.setenv("MFREC_AUTH_KEYS", keys)
    monkeypatch.delenv("MFREC_EVENTS_DB", raising=False)
    recommender = Recommender(known_answer(), "cpu", **ServingSettings().recommender_options())
    return create_app(recommender, settings=ServingSettings()).test_client()


@pytest.fixture
def client(monkeypatch):
    return make_client(monkeypatch, "AKIDEXAMPLE:right-secret,OTHER:other-secret")


def signed(key_id="AKIDEXAMPLE", secret="right-secret", body=BODY, path="/recommendations"):
    """The headers boto3 would send for ``body`` on ``path``, signed with SigV4."""
    request = AWSRequest(
        method="POST",
        url=f"http://localhost{path}",
        data=body,
        headers={"Content-Type": "application/json", "User-Agent": "Boto3/test"},
    )
    botocore_auth.SigV4Auth(Credentials(key_id, secret), "personalize", "us-east-1").add_auth(
        request
    )
    return dict(request.headers.items())


def post(client, headers, body=BODY, path="/recommendations"):
    return client.post(path, data=body, headers=headers)


def assert_forbidden(response, code: str, words: str) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["x-amzn-ErrorType"] == code
    assert response.get_json()["__type"] == code and words in response.get_json()["message"]


def test_the_right_key_is_accepted_and_each_key_has_its_own_secret(client):
    assert post(client, signed()).status_code == 200
    assert post(client, signed("OTHER", "other-secret")).status_code == 200
    assert_forbidden(
        post(client, signed("OTHER", "right-secret")), "InvalidSignatureException", "OTHER"
    )


def test_a_wrong_secret_is_refused(client):
    assert_forbidden(
        post(client, signed(secret="wrong")), "InvalidSignatureException", "does not match"
    )


def test_an_unknown_key_is_refused(client):
    assert_forbidden(post(client, signed(key_id="NOBODY")), "UnrecognizedClientException", "NOBODY")


def test_a_request_without_signature_is_refused(client):
    assert_forbidden(
        post(client, {"Content-Type": "application/json"}),
        "MissingAuthenticationTokenException",
        "sign the request",
    )


def test_a_changed_body_is_refused(client):
    headers = signed()
    tampered = BODY.replace(b"685", b"302")
    assert_forbidden(post(client, headers, tampered), "InvalidSignatureException", "does not")


@pytest.mark.parametrize("minutes", [-6, 6])
def test_a_timestamp_beyond_five_minutes_is_refused(client, monkeypatch, minutes):
    when = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    when += datetime.timedelta(minutes=minutes)
    monkeypatch.setattr(botocore_auth, "get_current_datetime", lambda: when)
    assert_forbidden(post(client, signed()), "InvalidSignatureException", "Signature expired")


def test_within_five_minutes_is_accepted(client, monkeypatch):
    when = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    monkeypatch.setattr(
        botocore_auth, "get_current_datetime", lambda: when - datetime.timedelta(minutes=4)
    )
    assert post(client, signed()).status_code == 200


def test_events_paths_are_checked_too(client):
    body = json.dumps({"datasetArn": "arn:aws:personalize:x:1:dataset/d", "users": []}).encode()
    assert_forbidden(post(client, {}, body, "/users"), "MissingAuthenticationTokenException", "")
    answer = post(client, signed(body=body, path="/users"), body, "/users")
    assert answer.status_code == 400 and "not supported" in answer.get_json()["message"]


def test_ping_and_invocations_stay_unauthenticated(client):
    assert client.get("/ping").status_code == 200
    answer = client.post(
        "/invocations", data=b'{"user_id": "685"}', content_type="application/json"
    )
    assert answer.status_code == 200


def test_without_keys_only_loopback_clients_are_answered(monkeypatch):
    client = make_client(monkeypatch, None)
    assert post(client, {"Content-Type": "application/json"}).status_code == 200
    remote = client.post("/recommendations", data=BODY, environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert_forbidden(remote, "AccessDeniedException", "set MFREC_AUTH_KEYS")
    opened = make_client(monkeypatch, "none")
    answer = opened.post("/recommendations", data=BODY, environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert answer.status_code == 200


def test_keys_from_a_file(tmp_path):
    path = tmp_path / "keys"
    path.write_text("AKID1:s1\nAKID2:s2\n")
    assert read_keys({"MFREC_AUTH_KEYS": str(path)}) == {"AKID1": "s1", "AKID2": "s2"}


@pytest.mark.parametrize("value", ["AKID-without-secret", ",,"])
def test_bad_keys_stop_the_app_at_start(monkeypatch, value):
    with pytest.raises(ConfigError, match="MFREC_AUTH_KEYS"):
        make_client(monkeypatch, value)
