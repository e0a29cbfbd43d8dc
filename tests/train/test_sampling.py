"""The negative samplers: popularity to the power alpha with its log-probabilities (logQ), uniform,
and the positive-pair lookup of the pairwise losses."""

from __future__ import annotations

import torch

from mfrec.train.sampling import NegativeSampler, PositiveSet


def test_popularity_sampler_follows_counts_to_the_power_alpha():
    counts = torch.tensor([0.0, 3.0, 15.0, 63.0])
    generator = torch.Generator().manual_seed(0)
    sampler = NegativeSampler(counts, "popularity", 0.5, generator)
    draws = sampler.sample((200_000,))
    expected = (counts + 1) ** 0.5 / ((counts + 1) ** 0.5).sum()  # 1, 2, 4, 8 over 15
    observed = torch.bincount(draws, minlength=4) / len(draws)
    torch.testing.assert_close(observed, expected, atol=0.005, rtol=0)
    torch.testing.assert_close(sampler.log_prob(torch.tensor([3])), expected[[3]].log())
    uniform = NegativeSampler(counts, "uniform", 0.5, torch.Generator().manual_seed(0))
    assert uniform.log_prob(torch.tensor([0])) is None
    assert set(uniform.sample((1000,)).tolist()) == {0, 1, 2, 3}


def test_positive_set_finds_training_pairs():
    positives = PositiveSet(torch.tensor([0, 0, 2]), torch.tensor([1, 3, 0]), num_items=4)
    found = positives.contains(torch.tensor([0, 2]), torch.tensor([[1, 2, 3], [0, 3, 3]]))
    assert found.tolist() == [[True, False, True], [True, False, False]]
