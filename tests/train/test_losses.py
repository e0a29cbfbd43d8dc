"""Losses: known values on hand-made scores, and a checkerboard every loss must learn.

Checkerboard: users and items fall into 4 groups; a user interacts only with items of their own
group (8 of its 10 items). The right answer is known exactly: for every user the 10 items of
their group, including the 2 never seen, must outrank every other item.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mfrec.train.config import TrainConfig
from mfrec.train.interactions import Interactions
from mfrec.train.loop import Trainer
from mfrec.train.losses import (
    LOSS_FUNCTIONS,
    adaptive_hinge_loss,
    bpr_loss,
    hinge_loss,
    pointwise_loss,
    sampled_softmax_loss,
)

GROUPS, USERS, ITEMS = 4, 80, 40


pytestmark = pytest.mark.usefixtures("one_thread")


def checkerboard() -> Interactions:
    rng = np.random.default_rng(0)
    user_idx, item_idx = [], []
    for user in range(USERS):
        group_items = np.arange(user % GROUPS, ITEMS, GROUPS)  # items i with i % 4 == group
        for item in rng.choice(group_items, size=8, replace=False):
            user_idx.append(user)
            item_idx.append(item)
    return Interactions(
        user_idx=np.asarray(user_idx, dtype=np.int64),
        item_idx=np.asarray(item_idx, dtype=np.int64),
        user_ids=np.asarray([f"u{u}" for u in range(USERS)]),
        item_ids=np.asarray([f"i{i}" for i in range(ITEMS)]),
    )


@pytest.mark.parametrize("loss", sorted(LOSS_FUNCTIONS))
@pytest.mark.parametrize("sampling", ["uniform", "popularity"])
def test_every_loss_learns_the_checkerboard(loss, sampling):
    # Small dimension and some L2 keep the model from memorising each user's 8 items (which
    # would push the 2 unseen items of the group down); 4 epochs reach the known answer.
    config = TrainConfig(
        loss=loss,
        negative_sampling=sampling,
        embedding_dim=4,
        l2=0.1,
        recency_min_weight=1.0,  # the checkerboard has no time order
        lr_schedule="constant",
        batch_size=32,
        learning_rate=0.05,
        num_epochs=4,
        num_negatives=32 if loss == "softmax" else None,
    )
    data = checkerboard()
    trainer = Trainer(data, config, torch.device("cpu"), horizon_epochs=config.num_epochs)
    for _ in range(config.num_epochs):
        trainer.run_epoch()
    scores = trainer.model.score_users(torch.arange(USERS))
    top10 = torch.topk(scores, 10, dim=1).indices
    groups = torch.arange(USERS)[:, None] % GROUPS
    assert bool((top10 % GROUPS == groups).all()), f"{loss}: some user's top 10 leaves the group"


def test_known_values():
    positive = torch.tensor([2.0, 0.0])
    negative = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    sig = torch.sigmoid
    expected_bpr = -(torch.log(sig(torch.tensor(2.0))) + torch.log(sig(torch.tensor(1.0)))) / 2
    expected_bpr = (expected_bpr - torch.log(sig(torch.tensor(0.0)))) / 2
    torch.testing.assert_close(bpr_loss(positive, negative), expected_bpr)
    # hinge: row 0 margins max(0, 1-2+0)=0, max(0, 1-2+1)=0; row 1: 1, 1.
    torch.testing.assert_close(hinge_loss(positive, negative), torch.tensor(0.5))
    # adaptive hinge uses the hardest negative: row 0 -> 0, row 1 -> 1.
    torch.testing.assert_close(adaptive_hinge_loss(positive, negative), torch.tensor(0.5))
    # pointwise: -log sig(pos) - mean log(1 - sig(neg)).
    expected = (
        sum(
            -math.log(1 / (1 + math.exp(-p))) + np.mean([math.log(1 + math.exp(n)) for n in row])
            for p, row in zip([2.0, 0.0], [[0.0, 1.0], [0.0, 0.0]], strict=True)
        )
        / 2
    )
    torch.testing.assert_close(pointwise_loss(positive, negative).item(), expected)
    # softmax: -log(e^pos / (e^pos + sum e^neg)).
    expected = (-math.log(math.e**2 / (math.e**2 + 1 + math.e)) - math.log(1 / 3)) / 2
    torch.testing.assert_close(sampled_softmax_loss(positive, negative).item(), expected)


def test_weights_weight_each_positive():
    positive = torch.tensor([2.0, 0.0])
    negative = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    only_second = hinge_loss(positive, negative, weights=torch.tensor([0.0, 3.0]))
    torch.testing.assert_close(only_second, torch.tensor(1.0))


def test_softmax_logq_correction_and_accidental_hits():
    positive = torch.tensor([1.0])
    negative = torch.tensor([[1.0, 5.0]])
    # The second negative is the positive itself (an accidental hit): masked out.
    mask = torch.tensor([[True, False]])
    masked = sampled_softmax_loss(positive, negative, negative_mask=mask)
    torch.testing.assert_close(masked, torch.tensor(math.log(2.0)))
    # logQ: subtracting log q from every logit; equal q changes nothing.
    logq = torch.log(torch.tensor([0.5]))
    same = sampled_softmax_loss(
        positive, negative, positive_logq=logq, negative_logq=logq.expand(2), negative_mask=mask
    )
    torch.testing.assert_close(same, masked)
    # A frequently sampled negative (high q) counts for less.
    corrected = sampled_softmax_loss(
        positive,
        negative,
        positive_logq=torch.log(torch.tensor([0.01])),
        negative_logq=torch.log(torch.tensor([0.9, 0.1])),
        negative_mask=mask,
    )
    assert corrected < masked


@pytest.mark.gpu
@pytest.mark.parametrize("loss", ["softmax", "bpr"])
def test_cuda_learns_the_checkerboard_and_agrees_with_cpu(loss):
    config = TrainConfig(
        loss=loss,
        embedding_dim=4,
        l2=0.1,
        recency_min_weight=1.0,
        lr_schedule="constant",
        batch_size=32,
        learning_rate=0.05,
        num_epochs=4,
        num_negatives=32 if loss == "softmax" else None,
    )
    tops = {}
    for name in ("cpu", "cuda"):
        trainer = Trainer(checkerboard(), config, torch.device(name), horizon_epochs=4)
        for _ in range(config.num_epochs):
            trainer.run_epoch()
        arrays = trainer.model.arrays()  # float32 NumPy on the host, whatever the device
        model = type(trainer.model).from_arrays(arrays, device="cpu")
        tops[name] = torch.topk(model.score_users(torch.arange(USERS)), 10, dim=1).indices
    groups = torch.arange(USERS)[:, None] % GROUPS
    # The devices draw different random streams, so the weights differ; both find the answer.
    for name, top10 in tops.items():
        assert bool((top10 % GROUPS == groups).all()), name
    assert torch.equal(tops["cpu"].sort(dim=1).values, tops["cuda"].sort(dim=1).values)
