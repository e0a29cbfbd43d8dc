"""recency_min_weight=auto: the probe that chooses the recency weighting on validation data."""

import io
import logging

import numpy as np
import pytest
import torch

from mfrec.train.auto import CANDIDATES, PROBE_EPOCHS, choose_recency, probe_sample
from mfrec.train.config import TrainConfig
from mfrec.train.interactions import Interactions
from mfrec.train.pipeline import train_model
from mfrec.train.split import temporal_split

CPU = torch.device("cpu")
CONFIG = TrainConfig(
    embedding_dim=8, num_epochs=6, batch_size=64, num_negatives=16, device="cpu", seed=3
)


pytestmark = pytest.mark.usefixtures("one_thread")


def drifting_data(num_users: int = 90, seed: int = 0) -> Interactions:
    """Three topics of 30 items. Each user's first 24 interactions are in one topic and the
    last 12 (the validation hold-out among them) in the next: tastes that drift."""
    rng = np.random.default_rng(seed)
    users, items, times = [], [], []
    for user in range(num_users):
        old, new = user % 3, (user + 1) % 3
        chosen = [*(old * 30 + rng.choice(30, 24, replace=False))]
        chosen += [*(new * 30 + rng.choice(30, 12, replace=False))]
        users += [user] * len(chosen)
        items += chosen
        times += list(range(len(chosen)))
    return Interactions.from_ids(np.array(users), np.array(items), timestamps=np.array(times))


def test_drifting_tastes_choose_recency_weighting():
    fit, holdout = temporal_split(drifting_data(), 0.1)
    config, report = choose_recency(fit, holdout, CONFIG, CPU)
    scores = report["probe_ndcg@10"]
    assert scores["0"] > scores["1"] + 0.05  # the newest taste is the one validated
    assert config.recency_min_weight == 0.0 == report["chosen"]
    assert report["probe_users"] == 90 and report["probe_seconds"] > 0


def test_a_given_weighting_is_kept_without_a_probe():
    fit, holdout = temporal_split(drifting_data(), 0.1)
    given = TrainConfig(**{**CONFIG.__dict__, "recency_min_weight": 0.4})
    assert choose_recency(fit, holdout, given, CPU) == (given, {})


def test_without_validation_data_auto_is_the_first_candidate(caplog):
    with caplog.at_level(logging.INFO, logger="mfrec.train"):
        config, report = choose_recency(drifting_data(), None, CONFIG, CPU)
    assert config.recency_min_weight == CANDIDATES[0] == 0.0 and report == {}
    assert "no validation data to probe" in caplog.text


def test_the_probe_samples_validation_users():
    fit, holdout = temporal_split(drifting_data(), 0.1)
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


def test_auto_is_resolved_in_the_saved_model_and_resumes_exactly(tmp_path, caplog):
    data = drifting_data()
    expected = train_model(data, CONFIG, out=io.StringIO())
    assert expected.artifact.config["recency_min_weight"] == 0.0
    assert expected.metrics["recency_probe"]["chosen"] == 0.0
    fit, _ = temporal_split(data, CONFIG.validation_fraction)
    steps = -(-len(fit) // CONFIG.batch_size)
    probe_steps = len(CANDIDATES) * min(CONFIG.num_epochs, PROBE_EPOCHS) * steps
    calls = {"n": 0}

    def stop_in_main_fit():  # checked before every batch: probes first, then the main fit
        calls["n"] += 1
        return calls["n"] > probe_steps + steps + 5  # in the main fit's second epoch

    first = train_model(
        data, CONFIG, checkpoint_dir=tmp_path, should_stop=stop_in_main_fit, out=io.StringIO()
    )
    assert first.interrupted and len(first.history) == 1
    with caplog.at_level(logging.INFO, logger="mfrec.train"):
        resumed = train_model(data, CONFIG, checkpoint_dir=tmp_path, out=io.StringIO())
    assert "resuming from checkpoint" in caplog.text  # the probe chose as before: it matches
    assert not resumed.interrupted

    def untimed(metrics):
        probe = {k: v for k, v in metrics["recency_probe"].items() if k != "probe_seconds"}
        return {**metrics, "recency_probe": probe}

    assert untimed(resumed.metrics) == untimed(expected.metrics)
    for name in ("user_embeddings", "item_embeddings", "item_biases"):
        assert np.array_equal(getattr(resumed.artifact, name), getattr(expected.artifact, name))
