"""An iALS model's artifact is served like any other: every request type, save -> load -> serve."""

import dataclasses
import io

import numpy as np
import pytest
from drifting import drifting_data

from mfrec.serve.recommender import Recommender
from mfrec.serve.requests import REQUEST_TYPES, request_from_fields
from mfrec.train.artifact import load, save
from mfrec.train.config import TrainConfig
from mfrec.train.item_features import item_extras
from mfrec.train.pipeline import train_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data = drifting_data()
    config = TrainConfig(model="ials", embedding_dim=8, num_epochs=4, device="cpu")
    result = train_model(data, config, extras=item_extras(data), out=io.StringIO())
    folder = save(result.artifact, tmp_path_factory.mktemp("ials") / "model")
    return data, result.artifact, Recommender(load(folder), "cpu")


def test_the_artifact_says_it_is_an_ials_model_with_zero_biases(served):
    _, artifact, _ = served
    assert artifact.config["model"] == "ials" and artifact.metrics["model"] == "ials"
    assert not artifact.user_biases.any() and not artifact.item_biases.any()


def test_every_request_type_is_answered(served):
    data, artifact, recommender = served
    user, item = str(data.user_ids[0]), str(data.item_ids[0])
    fields = {
        "user": {"user_id": user, "top_n": 5},
        "history": {"user_id": "new", "history": [item, str(data.item_ids[1])], "top_n": 5},
        "similar_items": {"item_id": item, "top_n": 5},
        "rank": {"user_id": user, "item_ids": [str(i) for i in data.item_ids[:6]]},
        "popular": {"type": "popular", "top_n": 5},
        "trending": {"type": "trending", "top_n": 5},
    }
    assert set(fields) == set(REQUEST_TYPES)
    answers = recommender.answer([request_from_fields(fields[kind]) for kind in REQUEST_TYPES])
    for kind, answer in zip(REQUEST_TYPES, answers, strict=True):
        assert answer.error is None, (kind, answer.error)
        assert len(answer.item_ids) in (5, 6), kind
    # A user's list is the model's ranking: the dot products of the saved factors.
    scores = artifact.user_embeddings[0] @ artifact.item_embeddings.T
    scores[data.to_csr()[1][data.to_csr()[0][0] : data.to_csr()[0][1]]] = -np.inf
    expected = [str(i) for i in artifact.item_ids[np.argsort(-scores, kind="stable")[:5]]]
    assert list(answers[0].item_ids) == expected


def test_a_given_ials_configuration_trains_without_probes():
    config = TrainConfig(
        model="ials",
        embedding_dim=4,
        num_epochs=2,
        device="cpu",
        recency_min_weight=1.0,
        unobserved_weight=0.5,
        regularization=0.02,
    )
    result = train_model(drifting_data(), config, out=io.StringIO())
    assert "probes" not in result.metrics
    resolved = {"model": "ials", "batch_size": 1024}  # batch_size=auto: the CPU's
    assert result.artifact.config == {**config.to_dict(), **resolved}
    assert dataclasses.asdict(config)["regularization"] == 0.02
