"""auto: probes on the validation data resolve every ``auto`` hyperparameter into candidates."""

import dataclasses
import logging

import numpy as np
import pytest
import torch
from drifting import drifting_data

from mfrec.train import auto
from mfrec.train.auto import CANDIDATES, Interrupted, probe_sample, resolve
from mfrec.train.config import TrainConfig
from mfrec.train.split import temporal_split

CPU = torch.device("cpu")
CONFIG = TrainConfig(
    embedding_dim=8, num_epochs=6, batch_size=64, num_negatives=16, device="cpu", seed=3
)

pytestmark = pytest.mark.usefixtures("one_thread")


def split():
    return temporal_split(drifting_data(), 0.1)


def test_drifting_tastes_choose_recency_weighting_for_the_sgd_model():
    done = {}
    (config,) = resolve(*split(), dataclasses.replace(CONFIG, model="sgd"), CPU, done=done)
    scores = {probe["recency_min_weight"]: probe["ndcg@10"] for probe in done.values()}
    assert scores[0.0] > scores[1.0] + 0.05  # the newest taste is the one validated
    assert config.model == "sgd" and config.recency_min_weight == 0.0
    assert all(probe["users"] == 90 and probe["seconds"] > 0 for probe in done.values())


def test_given_values_are_kept_without_a_probe():
    given = dataclasses.replace(
        CONFIG, model="ials", recency_min_weight=0.4, unobserved_weight=0.2, regularization=0.05
    )
    done = {}
    assert resolve(*split(), given, CPU, done=done) == [given]
    assert done == {}


def test_model_auto_gives_one_candidate_per_model_with_every_auto_resolved():
    done = {}
    candidates = resolve(*split(), CONFIG, CPU, done=done)
    assert [c.model for c in candidates] == ["ials", "sgd"]
    ials, sgd = candidates
    assert None not in (ials.recency_min_weight, ials.unobserved_weight, ials.regularization)
    assert sgd.recency_min_weight is not None
    ials_probes = [p for p in done.values() if p["model"] == "ials"]
    assert len(ials_probes) >= 4  # start, recency, then both line searches
    best = max(ials_probes, key=lambda probe: probe["ndcg@10"])
    chosen = candidates[0]
    assert (best["unobserved_weight"], best["regularization"]) == (
        chosen.unobserved_weight,
        chosen.regularization,
    )


def test_finished_probes_are_not_run_again(monkeypatch):
    done = {}
    first = resolve(*split(), CONFIG, CPU, done=done)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished probe ran again")

    monkeypatch.setattr(auto, "make_trainer", no_training)
    assert resolve(*split(), CONFIG, CPU, done=dict(done)) == first


def test_a_probe_cut_short_is_not_recorded():
    calls_after_the_first = {"n": 0}
    done, saved = {}, []

    def stop_in_the_second_probe():  # iALS checks before each half-step: 2 per iteration
        if saved:
            calls_after_the_first["n"] += 1
        return calls_after_the_first["n"] > 3

    with pytest.raises(Interrupted):
        resolve(
            *split(),
            CONFIG,
            CPU,
            stop_in_the_second_probe,
            done=done,
            on_probe=lambda d: saved.append(len(d)),
        )
    assert len(done) == 1 and saved == [1]


def test_an_ials_probe_ends_once_its_score_falls_patience_times_in_a_row():
    assert auto._falling([0.1, 0.3, 0.2, 0.1]) and not auto._falling([0.1, 0.3, 0.2, 0.25])
    assert not auto._falling([0.3, 0.2])  # needs PROBE_PATIENCE falls after a first score
    done = {}
    resolve(*split(), CONFIG, CPU, done=done)
    for probe in (p for p in done.values() if p["model"] == "ials"):
        assert probe["epochs"] <= probe["iterations"] <= auto.IALS_PROBE_ITERATIONS
        if probe["iterations"] < auto.IALS_PROBE_ITERATIONS:  # stopped: its best is behind it
            assert probe["iterations"] - probe["epochs"] >= auto.PROBE_PATIENCE


def test_without_validation_data_auto_takes_the_documented_fallback(caplog):
    with caplog.at_level(logging.INFO, logger="mfrec.train"):
        (config,) = resolve(drifting_data(), None, CONFIG, CPU)
    assert config.model == "sgd" and config.recency_min_weight == CANDIDATES[0] == 0.0
    assert "no validation data to probe" in caplog.text


def test_the_probe_samples_validation_users():
    fit, holdout = split()
    small_fit, small_holdout = probe_sample(fit, holdout, seed=0, max_users=10)
    users = np.unique(small_holdout.user_idx)
    assert len(users) == 10
    assert set(np.unique(small_fit.user_idx)) == set(users)
    assert small_fit.num_users == fit.num_users  # index spaces kept
    assert probe_sample(fit, holdout, seed=0, max_users=1000) == (fit, holdout)
    # A validation set of a few users: the probes train on those users' interactions only.
    few = holdout.subset(holdout.user_idx < 30)
    few_fit, few_holdout = probe_sample(fit, few, seed=0, max_users=1000)
    assert few_holdout is few and set(np.unique(few_fit.user_idx)) == set(range(30))
