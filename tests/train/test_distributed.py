"""Training in 2 processes (gloo on the loopback) against 1: iALS equal, SGD as good, decisions
shared, a lost peer found. Each rank is a spawned process on one thread; data are small, and
the comparisons share one spawn (starting a rank costs seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from distributed_ranks import (
    decisions,
    free_port,
    ials_factors,
    one_dies,
    run_ranks,
    several,
    sgd_quality,
)

from mfrec.train import distributed
from mfrec.train.config import TrainConfig
from mfrec.train.errors import ConfigError
from mfrec.train.ials import IALSParams
from mfrec.train.interactions import Interactions

SOLVERS = ("cg", "cholesky")
LOSSES = ("softmax", "bpr")
EXCHANGES = {"rows": 0.0, "dense": 1e9}  # loop.DENSE_RATIO forcing each exchange


def clustered(num_users=120, num_items=60, per_user=12, seed=0) -> Interactions:
    """Users in 4 taste clusters, each drawing items mostly from its own quarter."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(num_users), per_user)
    cluster = users % 4
    own = rng.integers(0, num_items // 4, len(users)) + cluster * (num_items // 4)
    items = np.where(rng.random(len(users)) < 0.8, own, rng.integers(0, num_items, len(users)))
    return Interactions.from_ids(users, items, timestamps=np.arange(len(users)))


def _ials_case(solver):
    return clustered(), IALSParams(embedding_dim=8, solver=solver, seed=3), 3


def _sgd_case(loss):
    data = clustered(seed=1)
    fit = data.subset(np.arange(len(data)) % 12 != 11)
    valid = data.subset(np.arange(len(data)) % 12 == 11)
    # batch 100 of 1,320 rows: the last batch is short, so one share of it is padding alone
    config = TrainConfig(
        model="sgd", loss=loss, embedding_dim=8, num_epochs=6, batch_size=100, seed=5,
        learning_rate=0.05,
    )  # fmt: skip
    return fit, valid, config


@pytest.fixture(scope="module")
def two_ranks():
    calls = {("ials", s): (ials_factors, _ials_case(s)) for s in SOLVERS}
    calls |= {
        ("sgd", loss, exchange): (sgd_quality, (*_sgd_case(loss), ratio))
        for loss in LOSSES
        for exchange, ratio in EXCHANGES.items()
    }
    calls["decisions"] = (decisions, (7,))
    ranks = run_ranks(several, args=(calls,))
    for rank in ranks:
        if not isinstance(rank, dict):
            pytest.fail(f"a rank failed: {rank!r}")
    return ranks


@pytest.mark.parametrize("solver", SOLVERS)
def test_ials_two_processes_equal_one(two_ranks, solver):
    alone = ials_factors(distributed.SOLO, *_ials_case(solver))
    ranks = [rank[("ials", solver)] for rank in two_ranks]
    for users, items, losses in ranks:
        np.testing.assert_allclose(users, alone[0], atol=1e-5)
        np.testing.assert_allclose(items, alone[1], atol=1e-5)
        np.testing.assert_allclose(losses, alone[2], rtol=1e-5)
    np.testing.assert_array_equal(ranks[0][0], ranks[1][0])  # every rank holds the same tables


@pytest.mark.parametrize("exchange", EXCHANGES)
@pytest.mark.parametrize("loss", LOSSES)
def test_sgd_two_processes_match_one(two_ranks, loss, exchange):
    alone = sgd_quality(distributed.SOLO, *_sgd_case(loss))
    ranks = [rank[("sgd", loss, exchange)] for rank in two_ranks]
    for ndcg, losses, _state in ranks:
        assert ndcg >= 0.97 * alone[0]
        np.testing.assert_allclose(losses, alone[1], rtol=1e-4)
    for name, value in ranks[0][2].items():  # the ranks apply the same updates
        np.testing.assert_array_equal(value, ranks[1][2][name])
        np.testing.assert_allclose(value, alone[2][name], rtol=1e-4, atol=1e-5)


def test_broadcast_and_any_agree_on_every_rank(two_ranks):
    first, second = (rank["decisions"] for rank in two_ranks)
    assert first == second
    assert first[1] is True


def test_a_crashed_peer_fails_the_others_with_a_clear_error():
    survivor = run_ranks(one_dies, timeout_env="20")[0]
    assert "another process of this distributed job failed" in str(survivor)


def test_shard_bounds_cover_rows_once_with_equal_costs():
    assert distributed.shard_bounds(np.ones(10), 3) == [(0, 3), (3, 6), (6, 10)]
    assert distributed.shard_bounds(np.array([5.0, 1, 1, 1, 1, 1]), 2) == [(0, 1), (1, 6)]
    assert distributed.shard_bounds(np.ones(1), 2) == [(0, 0), (0, 1)]


def test_solo_collectives_return_their_input():
    solo = distributed.SOLO
    table = torch.arange(6.0).view(3, 2)
    solo.all_gather_rows(table, [(0, 3)])
    assert solo.broadcast("x") == "x" and solo.any(True) and not solo.any(False)
    torch.testing.assert_close(table, torch.arange(6.0).view(3, 2))
    assert distributed.current() is solo


def test_one_process_joins_a_group_of_its_own_when_asked(monkeypatch):
    monkeypatch.setenv(distributed.PROCESS_GROUP_ENV, "always")
    with distributed.process_group(0, 1, 0, "127.0.0.1", free_port(), "gloo") as group:
        assert group.joined and group.distributed and distributed.current() is group
        assert torch.distributed.is_initialized() and torch.distributed.get_world_size() == 1
        table = torch.arange(6.0).view(3, 2)
        group.all_gather_rows(table, [(0, 3)])  # real collectives on a world of one
        assert group.broadcast("x") == "x" and group.any(True) and not group.any(False)
        torch.testing.assert_close(table, torch.arange(6.0).view(3, 2))
    assert distributed.current() is distributed.SOLO and not torch.distributed.is_initialized()


@pytest.mark.parametrize("value", ["", "auto", "AUTO"])
def test_one_process_joins_no_group_by_default(monkeypatch, value):
    monkeypatch.setenv(distributed.PROCESS_GROUP_ENV, value)
    with distributed.process_group(0, 1, 0, "127.0.0.1", free_port(), "gloo") as group:
        assert group is distributed.SOLO and not group.distributed


def test_a_bad_process_group_switch_is_a_config_error(monkeypatch):
    monkeypatch.setenv(distributed.PROCESS_GROUP_ENV, "yes")
    with pytest.raises(ConfigError, match=r"MFREC_PROCESS_GROUP='yes' must be auto .* or always"):
        distributed.join_alone()
