"""model=auto end to end: probes, a fit of each model, the winner refitted; resume is exact."""

import dataclasses
import io
import logging

import numpy as np
import pytest
from drifting import drifting_data

from mfrec.train import phases, search
from mfrec.train.config import TrainConfig
from mfrec.train.pipeline import train_model
from mfrec.train.split import temporal_split

CONFIG = TrainConfig(
    embedding_dim=8, num_epochs=6, batch_size=64, num_negatives=16, device="cpu", seed=3
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def reference():
    return train_model(drifting_data(), CONFIG, out=io.StringIO())


def test_both_models_are_fitted_and_the_better_validation_score_wins(reference):
    metrics = reference.metrics
    scores = {model: fit["ndcg@10"] for model, fit in metrics["model_search"].items()}
    assert set(scores) == {"ials", "sgd"}
    assert metrics["model"] == max(scores, key=scores.get) == reference.artifact.config["model"]
    assert metrics["mfrec"]["ndcg@10"] == scores[metrics["model"]]
    models = [record.get("model") for record in reference.history]
    assert models.count("ials") and models.count("sgd")  # each fit's epochs are reported
    assert reference.history[-1]["phase"] == "refit"
    assert reference.history[-1]["model"] == metrics["model"]


def test_the_sgd_model_wins_where_ials_cannot_fit():
    # Regularisation a thousand times the scale of the data: iALS's factors stay near zero.
    crippled = dataclasses.replace(CONFIG, regularization=1e3)
    result = train_model(drifting_data(), crippled, out=io.StringIO())
    scores = result.metrics["model_search"]
    assert scores["sgd"]["ndcg@10"] > scores["ials"]["ndcg@10"]
    assert result.metrics["model"] == "sgd" == result.artifact.config["model"]


@pytest.mark.parametrize("stop_at", ["probes", "first fit", "second fit", "refit"])
def test_interrupted_and_resumed_search_equals_uninterrupted(reference, tmp_path, caplog, stop_at):
    probes = len(reference.metrics["probes"])
    fits = reference.metrics["model_search"]
    fit, _ = temporal_split(drifting_data(), CONFIG.validation_fraction)
    sgd_steps = -(-len(fit) // CONFIG.batch_size)
    # should_stop is checked before each step: 2 per iALS iteration, 1 per SGD batch. An iALS
    # probe runs the iterations it records; the SGD probes their 5 epochs.
    probe_calls = sum(
        2 * probe["iterations"] if probe["model"] == "ials" else sgd_steps * probe["epochs"]
        for probe in reference.metrics["probes"]
    )
    stops = {
        "probes": 5,
        "first fit": probe_calls + 3,  # the iALS fit (the first candidate), second iteration
        "second fit": None,
        "refit": None,
    }
    calls = {"n": 0}
    budget = stops[stop_at]
    if budget is None:  # count the calls of a full run, then stop near its end
        counting = {"n": 0}

        def count():
            counting["n"] += 1
            return False

        train_model(drifting_data(), CONFIG, should_stop=count, out=io.StringIO())
        refit_steps = 2 * reference.metrics["epochs_trained"]
        if reference.metrics["model"] == "sgd":
            refit_steps = sgd_steps * reference.metrics["epochs_trained"]
        budget = counting["n"] - (refit_steps // 2 if stop_at == "refit" else refit_steps + 3)

    def stop():
        calls["n"] += 1
        return calls["n"] > budget

    caplog.clear()  # the counting run above logged its own probes
    with caplog.at_level(logging.INFO, logger="mfrec.train"):
        first = train_model(
            drifting_data(), CONFIG, checkpoint_dir=tmp_path, should_stop=stop, out=io.StringIO()
        )
        before = caplog.text.count("auto probe: ")
        caplog.clear()
        resumed = train_model(drifting_data(), CONFIG, checkpoint_dir=tmp_path, out=io.StringIO())
        after = caplog.text.count("auto probe: ")
    assert first.interrupted and not resumed.interrupted
    assert before + after == probes  # a finished probe never runs again
    assert (after > 0) == (stop_at == "probes")
    assert set(resumed.metrics["model_search"]) == set(fits)
    for model, fit in fits.items():
        assert resumed.metrics["model_search"][model]["ndcg@10"] == fit["ndcg@10"]
    for name in ("user_embeddings", "item_embeddings", "item_biases"):
        assert np.array_equal(getattr(resumed.artifact, name), getattr(reference.artifact, name))


def test_a_later_candidate_stops_at_the_search_time_limit(monkeypatch):
    monkeypatch.setattr(search, "MIN_LIMIT_SECONDS", 0.0)
    monkeypatch.setattr(search, "MIN_LIMIT_INTERACTIONS", 0)
    hurried = dataclasses.replace(CONFIG, search_time_factor=1e-9)  # SGD: no time left
    result = train_model(drifting_data(), hurried, out=io.StringIO())
    found = result.metrics["model_search"]
    assert found["sgd"]["stopped_by_time_limit"] and "stopped_by_time_limit" not in found["ials"]
    sgd_fit = [r for r in result.history if r.get("model") == "sgd" and r.get("phase") != "refit"]
    assert len(sgd_fit) == 1 and found["sgd"]["best_epoch"] == 1  # its one validated epoch


def test_small_data_is_never_time_limited(reference, monkeypatch):
    monkeypatch.setattr(search, "MIN_LIMIT_SECONDS", 0.0)  # the data size alone must exempt it
    hurried = dataclasses.replace(CONFIG, search_time_factor=1e-9)
    result = train_model(drifting_data(), hurried, out=io.StringIO())
    found = result.metrics["model_search"]
    assert not any(fit.get("stopped_by_time_limit") for fit in found.values())
    assert {m: f["ndcg@10"] for m, f in found.items()} == {
        m: f["ndcg@10"] for m, f in reference.metrics["model_search"].items()
    }


def test_no_time_limit_with_search_time_factor_zero(reference, monkeypatch):
    monkeypatch.setattr(search, "MIN_LIMIT_SECONDS", 0.0)
    monkeypatch.setattr(search, "MIN_LIMIT_INTERACTIONS", 0)
    unlimited = dataclasses.replace(CONFIG, search_time_factor=0.0)
    result = train_model(drifting_data(), unlimited, out=io.StringIO())
    assert result.metrics["model_search"] == reference.metrics["model_search"] | {
        model: {**fit, "seconds": result.metrics["model_search"][model]["seconds"]}
        for model, fit in reference.metrics["model_search"].items()
    }


def test_epochs_are_validated_on_a_sample_and_the_best_on_every_user(monkeypatch):
    monkeypatch.setattr(phases, "MONITOR_USERS", 20)
    fit, holdout = temporal_split(drifting_data(), CONFIG.validation_fraction)
    users = len(np.unique(holdout.user_idx))
    assert users > 20
    ials = dataclasses.replace(CONFIG, model="ials")
    result = train_model(drifting_data(), ials, out=io.StringIO())
    assert result.metrics["mfrec"]["num_users"] == users  # the reported VALID: every user
    sample = phases.monitor_sample(holdout, CONFIG.seed)
    assert len(np.unique(sample.user_idx)) == 20
    assert phases.monitor_sample(holdout, CONFIG.seed).user_idx.tolist() == sample.user_idx.tolist()


def test_a_resumed_job_interrupted_again_in_its_probes_resumes_from_its_own_checkpoint(
    reference, tmp_path, caplog
):
    """Issue 17, item 11: a SIGTERM during a resumed job's probes keeps every finished probe,
    and the next start resumes from that checkpoint, not from zero: across three starts each
    probe runs once, and the model equals the uninterrupted one."""
    with caplog.at_level(logging.INFO, logger="mfrec.train"):
        caplog.clear()
        for _ in range(2):  # stopped in the probes, twice
            calls = {"n": 0}

            def stop(calls=calls):
                calls["n"] += 1
                return calls["n"] > 25  # inside the second or third iALS probe of this start

            cut = train_model(
                drifting_data(),
                CONFIG,
                checkpoint_dir=tmp_path,
                should_stop=stop,
                out=io.StringIO(),
            )
            assert cut.interrupted
        resumed = train_model(drifting_data(), CONFIG, checkpoint_dir=tmp_path, out=io.StringIO())
        assert caplog.text.count("auto probe: ") == len(reference.metrics["probes"])
    assert not resumed.interrupted

    def settings(result):
        return [{k: v for k, v in p.items() if k != "seconds"} for p in result.metrics["probes"]]

    assert settings(resumed) == settings(reference)
    for name in ("user_embeddings", "item_embeddings", "item_biases"):
        assert np.array_equal(getattr(resumed.artifact, name), getattr(reference.artifact, name))
