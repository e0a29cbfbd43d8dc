"""Recency weighting: per-user linear weights, and the training weights they multiply."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mfrec.train.config import TrainConfig
from mfrec.train.interactions import Interactions
from mfrec.train.loop import Trainer
from mfrec.train.recency import recency_weights, training_weights

CPU = torch.device("cpu")


def test_recency_weights_rise_linearly_to_one_for_each_users_newest_row():
    data = Interactions.from_ids(
        ["a", "b", "a", "a", "b", "a"], list("pqrstu"), timestamps=[40, 5, 10, 30, 1, 20]
    )
    weights = recency_weights(data, 0.2)
    # a: ranks by time 40 -> 4/4, 10 -> 1/4, 30 -> 3/4, 20 -> 2/4; b: 5 -> 2/2, 1 -> 1/2.
    expected = 0.2 + 0.8 * np.array([1.0, 1.0, 0.25, 0.75, 0.5, 0.5])
    np.testing.assert_allclose(weights, expected, rtol=1e-6)
    assert weights.dtype == np.float32
    np.testing.assert_allclose(recency_weights(data, 1.0), 1.0)


def test_loss_weights_are_event_weights_times_recency():
    data = Interactions.from_ids(["a", "a", "b"], ["x", "y", "x"], timestamps=[2, 1, 5])
    data = Interactions(**{**data.__dict__, "weights": np.array([2.0, 3.0, 4.0], np.float32)})
    config = TrainConfig(recency_min_weight=0.5, embedding_dim=2)
    trainer = Trainer(data, config, CPU, horizon_epochs=1)
    # a's rows are ranked 2/2 and 1/2 by time: recency 1.0 and 0.75; b's only row: 1.0.
    assert trainer.weights.tolist() == pytest.approx([2.0, 2.25, 4.0])
    plain = Trainer(data, TrainConfig(recency_min_weight=1.0), CPU, horizon_epochs=1)
    assert plain.weights.tolist() == [2.0, 3.0, 4.0]


def test_training_weights_are_none_without_values_or_recency():
    data = Interactions.from_ids(["a", "b"], ["x", "y"], timestamps=[1, 2])
    assert training_weights(data, 1.0) is None
    assert training_weights(data, None).tolist() == [1.0, 1.0]  # auto unresolved: 0
