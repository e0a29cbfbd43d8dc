"""iALS: half-steps against a dense NumPy solve, solver and chunking agreement, exact resume,
determinism, a checkerboard whose answer is known, and the parameter checks."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from mfrec.train import ials
from mfrec.train.errors import ConfigError, DataValidationError, TrainingDivergedError
from mfrec.train.ials import IALSParams, IALSTrainer
from mfrec.train.interactions import Interactions

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")


def interactions(user_idx, item_idx, num_users, num_items) -> Interactions:
    return Interactions(
        user_idx=np.asarray(user_idx, dtype=np.int64),
        item_idx=np.asarray(item_idx, dtype=np.int64),
        user_ids=np.array([f"u{u}" for u in range(num_users)]),
        item_ids=np.array([f"i{i}" for i in range(num_items)]),
    )


def tiny():
    """6 users × 5 items with random confidences, one repeated pair, and user 5 without any
    interaction. Returns the data, its confidences, and the dense confidence matrix (6, 5)."""
    rng = np.random.default_rng(3)
    users, items = np.nonzero(rng.random((5, 5)) < 0.5)
    users, items = np.append(users, users[0]), np.append(items, items[0])  # a repeat
    confidences = rng.uniform(0.5, 3.0, len(users)).astype(np.float32)
    dense = np.zeros((6, 5))
    np.add.at(dense, (users, items), confidences)
    return interactions(users, items, 6, 5), confidences, dense


def dense_solve(fixed, dense, params):
    """Each row's exact minimiser with ``fixed`` held, as weighted least squares over all pairs.

    c(1 - s)² + α0 s² = (c + α0)(s - c / (c + α0))² + const, so an observed pair weighs c + α0
    towards c / (c + α0), and every other pair weighs α0 towards 0.
    """
    weight = params.alpha0 + dense
    target = dense / weight
    counts = (dense > 0).sum(1)
    reg = params.regularization * (counts + params.alpha0 * dense.shape[1]) ** params.nu
    eye = np.eye(fixed.shape[1])
    return np.stack(
        [
            np.linalg.solve(fixed.T @ (w[:, None] * fixed) + r * eye, fixed.T @ (w * t))
            for w, t, r in zip(weight, target, reg, strict=True)
        ]
    )


def dense_objective(user_factors, item_factors, dense, params):
    scores = user_factors @ item_factors.T
    observed = dense > 0
    total = (dense * (1 - scores) ** 2)[observed].sum() + params.alpha0 * (scores**2).sum()
    for factors, counts, others in (
        (user_factors, observed.sum(1), dense.shape[1]),
        (item_factors, observed.sum(0), dense.shape[0]),
    ):
        reg = (counts + params.alpha0 * others) ** params.nu
        total += params.regularization * (reg * (factors**2).sum(1)).sum()
    return total


def factors(trainer):
    return [t.detach().double().numpy().copy() for t in trainer._factors()]


@pytest.mark.parametrize("nu", [1.0, 0.0])
@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_half_steps_equal_the_dense_normal_equations(solver, nu):
    data, confidences, dense = tiny()
    # CG is exact after d steps in exact arithmetic; d = 3.
    params = IALSParams(embedding_dim=3, alpha0=0.3, regularization=0.05, nu=nu, solver=solver)
    trainer = IALSTrainer(data, params, CPU, confidences=confidences)
    user_factors, item_factors = factors(trainer)

    assert trainer.run_epoch(should_stop=lambda: trainer.batch == 1) is None
    assert (trainer.epoch, trainer.batch) == (0, 1)
    new_user_factors, same_item_factors = factors(trainer)
    np.testing.assert_allclose(
        new_user_factors, dense_solve(item_factors, dense, params), atol=2e-5
    )
    np.testing.assert_array_equal(same_item_factors, item_factors)
    assert not np.allclose(new_user_factors, user_factors)

    trainer.run_epoch()
    assert (trainer.epoch, trainer.batch) == (1, 0)
    same_user_factors, new_item_factors = factors(trainer)
    np.testing.assert_array_equal(same_user_factors, new_user_factors)
    expected = dense_solve(new_user_factors, dense.T, params)
    np.testing.assert_allclose(new_item_factors, expected, atol=2e-5)


def test_objective_matches_its_definition_and_never_increases():
    data, confidences, dense = tiny()
    params = IALSParams(embedding_dim=3, alpha0=0.3, regularization=0.05, solver="cholesky")
    trainer = IALSTrainer(data, params, CPU, confidences=confidences)
    losses = [trainer.objective()]
    assert losses[0] == pytest.approx(dense_objective(*factors(trainer), dense, params), rel=1e-6)
    for _ in range(8):
        losses.append(trainer.run_epoch())
        assert losses[-1] == trainer.objective()
        assert losses[-1] == pytest.approx(dense_objective(*factors(trainer), dense, params))
    assert all(b <= a * (1 + 1e-6) for a, b in zip(losses, losses[1:], strict=False))
    assert losses[-1] < 0.5 * losses[0]


def random_data(num_users=40, num_items=30, n=300, seed=0):
    rng = np.random.default_rng(seed)
    users, items = rng.integers(0, num_users, n), rng.integers(0, num_items, n)
    return interactions(users, items, num_users, num_items)


def fit(data, params, iterations, **kwargs):
    trainer = IALSTrainer(data, params, CPU, **kwargs)
    for _ in range(iterations):
        trainer.run_epoch()
    return trainer


def test_cg_with_enough_steps_matches_cholesky():
    data = random_data()
    exact = fit(data, IALSParams(embedding_dim=8, solver="cholesky"), 3)
    approx = fit(data, IALSParams(embedding_dim=8, solver="cg", cg_steps=24), 3)
    for a, b in zip(factors(exact), factors(approx), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    assert approx.objective() == pytest.approx(exact.objective(), rel=1e-5)


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_one_row_chunks_solve_like_one_chunk(solver):
    data = random_data()
    params = IALSParams(embedding_dim=8, solver=solver)
    whole = IALSTrainer(data, params, CPU)
    single = IALSTrainer(data, params, CPU, chunk_bytes=1)
    assert len(whole._sides[0].blocks) == 1  # small data: one chunk (MIN_SHARED_BYTES)
    assert len(single._sides[0].blocks) == data.num_users
    if solver == "cholesky":
        assert len(single._sides[0].by_length) == data.num_users
    else:
        assert len(single._sides[1].blocks) == data.num_items
    for trainer in (whole, single):
        trainer.run_epoch(should_stop=lambda trainer=trainer: trainer.batch == 1)
    # The same systems, solved in batches of another size: equal up to float32 rounding.
    for a, b in zip(factors(whole), factors(single), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def dense_from_tiles(side, num_rows, num_cols):
    """The confidence matrix that a side's tiles hold, as a dense array."""
    dense = np.zeros((num_rows, num_cols))
    for r0, r1, tiles in side.blocks:
        for c0, c1, tile in tiles:
            dense[r0:r1, c0:c1] += tile.to_dense().numpy()
    return dense


def test_tiles_cut_by_column_solve_like_one_tile(monkeypatch):
    data = random_data()
    confidences = np.random.default_rng(1).uniform(0.5, 2.0, len(data))
    params = IALSParams(embedding_dim=8)
    whole = IALSTrainer(data, params, CPU, confidences=confidences)
    # 4 columns of 8 floats per tile: up to 8 tiles of the 30 items, 10 of the 40 users (a
    # range without entries in a chunk has none); small chunks of rows.
    monkeypatch.setitem(ials.TILE_BYTES, "cpu", 4 * 8 * 4)
    tiled = IALSTrainer(data, params, CPU, confidences=confidences, chunk_bytes=3000)
    users, items = tiled._sides
    assert len(users.blocks) > 1 and max(len(tiles) for _, _, tiles in users.blocks) == 8
    assert max(len(tiles) for _, _, tiles in items.blocks) == 10
    expected = np.zeros((40, 30))
    np.add.at(expected, (data.user_idx, data.item_idx), confidences)
    np.testing.assert_allclose(dense_from_tiles(users, 40, 30), expected, rtol=1e-6)
    np.testing.assert_allclose(dense_from_tiles(items, 30, 40), expected.T, rtol=1e-6)
    assert tiled.objective() == pytest.approx(whole.objective(), rel=1e-6)
    for trainer in (whole, tiled):
        for _ in range(2):
            trainer.run_epoch()
    # The same products summed tile by tile: equal up to float32 rounding, which 3 CG steps
    # and 2 iterations carry on.
    for a, b in zip(factors(whole), factors(tiled), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)
    assert tiled.objective() == pytest.approx(whole.objective(), rel=1e-6)


def test_tiles_hold_32_bit_indices_and_keep_their_confidences_through_training(monkeypatch):
    # The products write their dots into scratch CSRs that share a tile's indices
    # (ials._scratch): the tile's own values, the confidences, must come out unchanged.
    monkeypatch.setitem(ials.TILE_BYTES, "cpu", 4 * 8 * 4)  # several tiles per chunk
    data = random_data()
    confidences = np.random.default_rng(1).uniform(0.5, 2.0, len(data))
    trainer = IALSTrainer(data, IALSParams(embedding_dim=8), CPU, confidences=confidences)
    tiles = [tile for side in trainer._sides for _, _, ts in side.blocks for _, _, tile in ts]
    assert {(t.crow_indices().dtype, t.col_indices().dtype) for t in tiles} == {
        (torch.int32, torch.int32)
    }
    before = [tile.values().clone() for tile in tiles]
    trainer.run_epoch()
    assert all(torch.equal(tile.values(), b) for tile, b in zip(tiles, before, strict=True))
    expected = np.zeros((40, 30))
    np.add.at(expected, (data.user_idx, data.item_idx), confidences)
    np.testing.assert_allclose(dense_from_tiles(trainer._sides[0], 40, 30), expected, rtol=1e-6)


def test_kept_grams_always_equal_a_fresh_product():
    data, params = random_data(), IALSParams(embedding_dim=8)
    trainer, other = IALSTrainer(data, params, CPU), IALSTrainer(data, params, CPU)
    other.run_epoch()

    def fresh():
        return [table.T @ table for table in trainer._factors()]

    for step in (
        trainer.objective,
        lambda: trainer.run_epoch(should_stop=lambda: trainer.batch == 1),  # users only
        trainer.run_epoch,  # the items, the objective
        lambda: trainer.load_state_dict(other.state_dict()),
    ):
        step()
        assert all(torch.equal(trainer._gram(s), g) for s, g in enumerate(fresh()))


def test_a_small_side_is_one_chunk_and_a_large_one_is_shared(monkeypatch):
    data, params = random_data(), IALSParams(embedding_dim=8)
    assert [len(side.blocks) for side in IALSTrainer(data, params, CPU)._sides] == [1, 1]
    monkeypatch.setattr(ials, "MIN_SHARED_BYTES", 0)  # as if the data were large
    assert all(len(side.blocks) >= 2 for side in IALSTrainer(data, params, CPU)._sides)


def test_threads_sharing_the_chunks_give_one_threads_factors_exactly(monkeypatch):
    monkeypatch.setattr(ials, "MIN_SHARED_BYTES", 0)  # shared chunks even on this small data
    data, params = random_data(), IALSParams(embedding_dim=8)
    alone = fit(data, params, 2)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # each chunk on one of 2 threads, its products single-threaded
    try:
        shared = fit(data, params, 2)
    finally:
        torch.set_num_threads(threads)
    assert torch.get_num_threads() == threads
    for a, b in zip(alone._factors(), shared._factors(), strict=True):
        assert torch.equal(a, b)
    assert shared.objective() == alone.objective()


@pytest.mark.parametrize("order", ["shuffled", "sorted", "sorted-distinct"])
def test_pairs_sum_repeated_pairs_like_numpy_unique(order):
    rng = np.random.default_rng(5)
    users, items = rng.integers(0, 7, 60), rng.integers(0, 5, 60)
    if order != "shuffled":
        key = np.sort(users * 5 + items)
        key = np.unique(key) if order == "sorted-distinct" else key
        users, items = key // 5, key % 5
    data = interactions(users, items, 7, 5)
    confidences = rng.uniform(0.1, 3.0, len(users))
    for given in (confidences, None):
        found = ials._pairs(data, given)
        pairs, inverse = np.unique(users * 5 + items, return_inverse=True)
        weights = np.ones(len(users)) if given is None else given
        summed = np.bincount(inverse, weights=weights).astype(np.float32)
        np.testing.assert_array_equal(found[0], pairs // 5)
        np.testing.assert_array_equal(found[1], pairs % 5)
        np.testing.assert_array_equal(found[2], summed)
        assert found[2].dtype == np.float32 and found[0].dtype == np.int64


@pytest.mark.parametrize("high", [70_000, 2**40])
def test_stable_sort_is_numpys_stable_argsort(high):
    keys = np.random.default_rng(2).integers(0, high, 5_000)
    keys[::7] = keys[0]  # ties keep their order
    keys.flags.writeable = False  # as an Interactions' arrays may be
    values, order = ials._stable_sort(keys)
    np.testing.assert_array_equal(order, np.argsort(keys, kind="stable"))
    np.testing.assert_array_equal(values, keys[order])
    assert [len(a) for a in ials._stable_sort(keys[:0])] == [0, 0]


def test_rows_whose_cholesky_fails_are_solved_by_lu(monkeypatch):
    data, params = random_data(), IALSParams(embedding_dim=8, solver="cholesky")
    expected = fit(data, params, 2)
    cholesky_ex = torch.linalg.cholesky_ex

    def failing_every_other_row(matrices):
        factor, info = cholesky_ex(matrices)
        factor[::2], info[::2] = float("nan"), 1
        return factor, info

    monkeypatch.setattr(torch.linalg, "cholesky_ex", failing_every_other_row)
    for a, b in zip(factors(fit(data, params, 2)), factors(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_resume_after_the_user_step_is_bit_identical(solver):
    data = random_data()
    params = IALSParams(embedding_dim=8, solver=solver)
    uninterrupted = fit(data, params, 3)

    first = fit(data, params, 1)
    assert first.run_epoch(should_stop=lambda: first.batch == 1) is None
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = IALSTrainer(data, params, CPU)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert (resumed.epoch, resumed.batch) == (1, 1)
    calls = []
    resumed.run_epoch(on_batch=lambda: calls.append((resumed.epoch, resumed.batch)))
    assert calls == [(2, 0)]
    loss = resumed.run_epoch()
    assert loss == uninterrupted.objective()
    for a, b in zip(resumed._factors(), uninterrupted._factors(), strict=True):
        assert torch.equal(a, b)


def test_a_seed_fixes_the_start_and_the_run():
    data = random_data()
    params = IALSParams(embedding_dim=8)
    a, b = fit(data, params, 2), fit(data, params, 2)
    for x, y in zip(a._factors(), b._factors(), strict=True):
        assert torch.equal(x, y)
    start = IALSTrainer(random_data(num_users=2000), IALSParams(embedding_dim=16), CPU)
    std = start.model.user_embeddings.std().item()
    assert std == pytest.approx(0.1 / 4, rel=0.05)  # init_scale / sqrt(d)
    other = IALSTrainer(data, IALSParams(embedding_dim=8, seed=7), CPU)
    assert not torch.equal(other._factors()[1], IALSTrainer(data, params, CPU)._factors()[1])


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_checkerboard_top_unseen_item_is_in_the_users_block(solver):
    # 4 blocks of 6 users × 5 items; each user saw every item of its block but one.
    users, items = [], []
    for user in range(24):
        block, held_out = user // 6, user % 5
        for item in range(block * 5, block * 5 + 5):
            if item - block * 5 != held_out:
                users.append(user)
                items.append(item)
    data = interactions(users, items, 24, 20)
    trainer = fit(data, IALSParams(embedding_dim=8, solver=solver), 6)
    model = trainer.model
    scores = model.score_users(torch.arange(24))
    scores[torch.as_tensor(users), torch.as_tensor(items)] = -torch.inf
    top = scores.argmax(1).numpy()
    np.testing.assert_array_equal(top // 5, np.arange(24) // 6)
    assert not model.item_biases.any() and not model.user_biases.any()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"embedding_dim": 0}, r"embedding_dim=0: must be an integer >= 1"),
        ({"alpha0": 0.0}, r"alpha0=0.0: must be a number in \(0, 1e6\]"),
        ({"regularization": -1.0}, r"regularization=-1.0: must be a number in \(0"),
        ({"nu": 1.5}, r"nu=1.5: must be a number in \[0, 1\]"),
        ({"init_scale": float("nan")}, r"init_scale=nan"),
        ({"solver": "adam"}, r"solver='adam': must be one of 'cholesky', 'cg'"),
        ({"cg_steps": 0}, r"cg_steps=0: must be an integer >= 1"),
        ({"seed": -1}, r"seed=-1: must be an integer in \[0, 2\*\*63\)"),
        ({"embedding_dim": True}, r"embedding_dim=True"),
    ],
)
def test_out_of_range_parameters_raise_config_error(change, message):
    with pytest.raises(ConfigError, match=message):
        IALSParams(**change)


def test_bad_confidences_checkpoints_and_divergence_raise_named_errors():
    data = random_data()
    with pytest.raises(DataValidationError, match="finite and >= 0"):
        IALSTrainer(data, IALSParams(embedding_dim=4), CPU, confidences=-np.ones(len(data)))
    with pytest.raises(DataValidationError, match=r"shape \(3,\), expected \(300,\)"):
        IALSTrainer(data, IALSParams(embedding_dim=4), CPU, confidences=np.ones(3))
    state = IALSTrainer(data, IALSParams(embedding_dim=4), CPU).state_dict()
    with pytest.raises(ConfigError, match="another embedding_dim"):
        IALSTrainer(data, IALSParams(embedding_dim=8), CPU).load_state_dict(state)
    trainer = IALSTrainer(data, IALSParams(embedding_dim=4), CPU)
    trainer.model.item_embeddings.data[0, 0] = float("nan")
    with pytest.raises(TrainingDivergedError, match="user factors became NaN.*raise regulariz"):
        trainer.run_epoch()


@pytest.mark.gpu
@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_cuda_run_matches_cpu(solver):
    data, params = random_data(), IALSParams(embedding_dim=8, solver=solver)
    cpu = fit(data, params, 2)
    cuda = IALSTrainer(data, params, torch.device("cuda"))
    for _ in range(2):
        cuda.run_epoch()
    for a, b in zip(cpu._factors(), cuda._factors(), strict=True):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-3, atol=1e-4)
