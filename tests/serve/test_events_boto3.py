"""boto3's own clients against ``mfrec serve`` (2 workers, loopback, MFREC_AUTH_KEYS set): the
runtime API, a named filter by ARN, PutEvents for a new user changing that user's next
recommendations, the events kept across a restart, SigV4 refusing a wrong secret, and 8
concurrent writers and readers losing no event."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from known_answer import known_answer

from mfrec.local_server import LocalServer
from mfrec.serve.events.sqlite_store import SQLiteStore
from mfrec.train.artifact import ATTRIBUTE_PREFIX, save

boto3 = pytest.importorskip("boto3")
botocore_config = pytest.importorskip("botocore.config")

KEY_ID, SECRET = "AKIDMFREC", "s3cret-for-tests"
GENRE = ["Comedy", "Comedy|Drama", "Drama", "Horror", "Comedy", "Drama", "Horror", ""]
ARN = "arn:aws:personalize:eu-west-1:123456789012:filter/no-comedy"
# A file key that is a full ARN (of another region): found by that ARN, as Personalize's.
FULL_ARN = "arn:aws:personalize:us-west-2:111122223333:filter/only-drama"
CAMPAIGN = "arn:aws:personalize:eu-west-1:123456789012:campaign/movies"


class Deployment:
    """A model folder, its settings, and ``mfrec serve`` started (again) on it."""

    def __init__(self, folder) -> None:
        model = known_answer()
        model.extra[ATTRIBUTE_PREFIX + "GENRE"] = np.array(GENRE)
        self.model_dir = save(model, folder / "model")
        filters = folder / "filters.json"
        named = {
            "no-comedy": 'EXCLUDE ItemID WHERE Items.GENRE IN ("Comedy")',
            FULL_ARN: 'INCLUDE ItemID WHERE Items.GENRE IN ("Drama")',
        }
        filters.write_text(json.dumps(named))
        self.env = {
            "MFREC_DEVICE": "cpu",
            "MFREC_FILTERS": str(filters),
            "MFREC_AUTH_KEYS": f"{KEY_ID}:{SECRET}",
        }
        self.log = open(folder / "server.log", "w+")  # noqa: SIM115 (closed in stop)
        self.server = None

    def start(self) -> None:
        self.server = LocalServer(
            self.model_dir, workers=2, env=self.env, stdout=self.log, stderr=self.log
        )

    def stop(self) -> None:
        self.server.stop()

    def client(self, service: str, secret: str = SECRET):
        return boto3.client(
            service,
            endpoint_url=self.server.url,
            region_name="eu-west-1",
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=secret,
            config=botocore_config.Config(retries={"max_attempts": 1}),
        )


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    deployment = Deployment(tmp_path_factory.mktemp("events_boto3"))
    deployment.start()
    yield deployment
    deployment.stop()
    deployment.log.close()


def items(answer: dict, key: str = "itemList") -> list[str]:
    return [entry["itemId"] for entry in answer[key]]


def put(events_client, user_id: str, item_ids: list[str], start: float = 1.7e9) -> None:
    events_client.put_events(
        trackingId="tracker",
        userId=user_id,
        sessionId=f"session-{user_id}",
        eventList=[
            {"eventType": "watch", "itemId": item, "sentAt": start + k}
            for k, item in enumerate(item_ids)
        ],
    )


def test_runtime_calls_and_a_named_filter_by_arn(deployment):
    runtime = deployment.client("personalize-runtime")
    plain = runtime.get_recommendations(campaignArn=CAMPAIGN, userId="685", numResults=3)
    assert items(plain) == ["i0", "i2", "i3"]
    filtered = runtime.get_recommendations(campaignArn=CAMPAIGN, userId="302", filterArn=ARN)
    assert filtered["itemList"] and not set(items(filtered)) & {"i0", "i1", "i4"}
    drama = runtime.get_recommendations(campaignArn=CAMPAIGN, userId="302", filterArn=FULL_ARN)
    assert items(drama) == ["i1", "i2", "i5"]
    with pytest.raises(runtime.exceptions.ResourceNotFoundException, match="only-comedy"):
        runtime.get_recommendations(
            campaignArn=CAMPAIGN, userId="302", filterArn=FULL_ARN.replace("drama", "comedy")
        )
    ranked = runtime.get_personalized_ranking(
        campaignArn=CAMPAIGN, userId="685", inputList=["i5", "not-an-item", "i1"]
    )
    assert items(ranked, "personalizedRanking") == ["i1", "i5", "not-an-item"]
    assert ranked["personalizedRanking"][-1]["score"] == 0.0


def test_put_events_for_a_new_user_changes_its_recommendations_and_survives_restart(deployment):
    runtime = deployment.client("personalize-runtime")
    events = deployment.client("personalize-events")
    before = items(runtime.get_recommendations(campaignArn=CAMPAIGN, userId="newcomer"))
    put(events, "newcomer", ["i6", "i7"])
    after = items(runtime.get_recommendations(campaignArn=CAMPAIGN, userId="newcomer"))
    assert after != before and not {"i6", "i7"} & set(after)
    deployment.stop()
    deployment.start()
    runtime = deployment.client("personalize-runtime")
    assert items(runtime.get_recommendations(campaignArn=CAMPAIGN, userId="newcomer")) == after


def test_put_items_reaches_the_named_filter(deployment):
    events = deployment.client("personalize-events")
    runtime = deployment.client("personalize-runtime")
    assert "i2" in items(
        runtime.get_recommendations(campaignArn=CAMPAIGN, userId="u3", filterArn=ARN)
    )
    events.put_items(
        datasetArn="arn:aws:personalize:eu-west-1:123456789012:dataset/movies/ITEMS",
        items=[{"itemId": "i2", "properties": json.dumps({"genre": "Comedy"})}],
    )
    answer = runtime.get_recommendations(campaignArn=CAMPAIGN, userId="u3", filterArn=ARN)
    assert "i2" not in items(answer)


def test_sigv4_rejects_a_wrong_secret_and_accepts_the_right_one(deployment):
    wrong = deployment.client("personalize-runtime", secret="not-the-secret")
    with pytest.raises(wrong.exceptions.ClientError) as refused:
        wrong.get_recommendations(campaignArn=CAMPAIGN, userId="685")
    error = refused.value.response["Error"]
    assert error["Code"] == "InvalidSignatureException" and "does not match" in error["Message"]
    events = deployment.client("personalize-events", secret="not-the-secret")
    with pytest.raises(events.exceptions.ClientError, match="InvalidSignatureException"):
        put(events, "intruder", ["i1"])
    right = deployment.client("personalize-runtime")
    assert right.get_recommendations(campaignArn=CAMPAIGN, userId="685")["itemList"]


def test_eight_concurrent_writers_and_readers_lose_no_event(deployment):
    rounds, failures = 15, []

    def work(worker: int) -> None:
        try:
            events = deployment.client("personalize-events")
            runtime = deployment.client("personalize-runtime")
            for n in range(rounds):
                put(events, f"writer-{worker}", [f"i{n % 8}", f"i{(n + 3) % 8}"], 1.7e9 + 10 * n)
                runtime.get_recommendations(campaignArn=CAMPAIGN, userId=f"writer-{worker}")
        except Exception as exc:  # reported below
            failures.append(repr(exc))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    store = SQLiteStore(deployment.model_dir / "events.sqlite")
    histories = store.histories([f"writer-{w}" for w in range(8)])
    assert [len(histories[f"writer-{w}"]) for w in range(8)] == [2 * rounds] * 8
    store.close()
