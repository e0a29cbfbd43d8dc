"""The sequence model (model=sequence): windows, causality, batch == single, a known-answer
next-item task that matrix factorisation cannot learn, exact resume, the artifact on a CPU."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch

from mfrec.train import artifact as artifact_io
from mfrec.train.config import TrainConfig
from mfrec.train.errors import ConfigError
from mfrec.train.interactions import Interactions
from mfrec.train.losses import sampled_softmax_loss
from mfrec.train.metrics import evaluate
from mfrec.train.pipeline import train_model
from mfrec.train.sequence_model import SequenceModel
from mfrec.train.sequence_trainer import (
    HISTORY_INDPTR,
    HISTORY_ITEMS,
    SequenceTrainer,
    multi_target_softmax_loss,
)
from mfrec.train.sequences import UserSequences, left_pad
from mfrec.train.split import temporal_split
from mfrec.train.trainers import make_trainer

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")
NUM_ITEMS = 20
CONFIG = TrainConfig(
    model="sequence",
    embedding_dim=16,
    num_heads=2,
    num_blocks=1,
    max_history=6,
    batch_size=48,
    num_negatives=10,
    num_epochs=4,
    recency_min_weight=1.0,
    learning_rate=0.01,
    blend_user=False,  # the tests that blend say so
)


def successor_data(num_users=60, seed=0) -> Interactions:
    """Known answer: every user walks the ring of :data:`NUM_ITEMS` items, always following
    item ``i`` with item ``i + 1`` (from a random start, 6 to 12 steps); file order shuffled,
    so only the timestamps give the order."""
    rng = np.random.default_rng(seed)
    rows = [
        (user, (start + step) % NUM_ITEMS, 100 * user + step)
        for user in range(num_users)
        for start, length in [(rng.integers(NUM_ITEMS), rng.integers(6, 13))]
        for step in range(length)
    ]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    users, items, times = map(np.array, zip(*rows, strict=True))
    return Interactions.from_ids(users, np.char.add("i", items.astype(str)), timestamps=times)


def test_sequences_are_in_time_order_and_windows_target_every_later_item():
    data = successor_data(num_users=5)
    sequences = UserSequences.from_interactions(data)
    names = data.item_ids
    for user in range(data.num_users):
        walk = [
            int(n[1:])
            for n in names[sequences.items[sequences.indptr[user] : sequences.indptr[user + 1]]]
        ]
        assert all((b - a) % NUM_ITEMS == 1 for a, b in zip(walk[:-1], walk[1:], strict=True))
    windows, weights = sequences.windows(4)
    weights = weights[:, :, 0]
    targets = windows[:, 1:][weights > 0]
    # every interaction but each user's first is a target exactly once
    assert len(targets) == len(data) - data.num_users
    assert weights.shape == (len(windows), 4) and set(np.unique(weights)) <= {0.0, 1.0}
    assert (windows[:, :-1][weights > 0] < data.num_items).all()


def test_windows_with_a_span_target_each_of_the_next_items_of_the_same_user():
    # user a: items 0..8, user b: 20..22; windows of 3 positions, 2 targets each
    users = np.array([0] * 9 + [1] * 3)
    items = np.array([*range(9), 20, 21, 22])
    item_ids = np.array([f"i{i}" for i in range(23)])
    data = Interactions(users, items, np.array(["a", "b"]), item_ids, timestamps=np.arange(12))
    windows, weights = UserSequences.from_interactions(data).windows(3, span=2)
    pad = data.num_items
    assert windows.tolist() == [
        [5, 6, 7, 8, pad],  # the newest window: nothing past the user's newest item
        [2, 3, 4, 5, 6],  # its last targets cross into the newer window's
        [pad, 0, 1, 2, 3],
        [pad, 20, 21, 22, pad],
    ]
    assert weights.shape == (4, 3, 2)
    # each window's user (blend_user adds that user's row at every position)
    assert UserSequences.from_interactions(data).window_users(3).tolist() == [0, 0, 0, 1]
    # target j of position t is item t + 1 + j, weighted 0 where either is padding
    assert weights[0].tolist() == [[1, 1], [1, 1], [1, 0]]
    assert weights[2].tolist() == [[0, 0], [1, 1], [1, 1]]
    assert weights[3].tolist() == [[0, 0], [1, 1], [1, 0]]
    # the first targets are exactly the one-step windows' targets
    one_step, one_weights = UserSequences.from_interactions(data).windows(3)
    assert (weights[:, :, 0] == one_weights[:, :, 0]).all()
    first = windows[:, 1:4][weights[:, :, 0] > 0]
    assert first.tolist() == one_step[:, 1:4][one_weights[:, :, 0] > 0].tolist()


def test_multi_target_loss_is_one_softmax_per_target_against_the_shared_negatives():
    generator = torch.Generator().manual_seed(0)
    positive = torch.randn(5, 3, generator=generator)
    negative = torch.randn(5, 7, generator=generator)
    negative[0, 2] = -torch.inf  # a negative left out of row 0
    weights = torch.tensor([1.0, 0.0, 2.0, 1.0, 0.5]).repeat_interleave(3).view(5, 3)
    weights[3, 1] = 0.0
    # target j of each row alone: the usual sampled softmax of that column
    mask = torch.isfinite(negative)
    expected = (
        sum(
            sampled_softmax_loss(positive[:, j], negative, weights[:, j], negative_mask=mask)
            * weights[:, j].sum()
            for j in range(3)
        )
        / weights.sum()
    )
    torch.testing.assert_close(multi_target_softmax_loss(positive, negative, weights), expected)
    one = multi_target_softmax_loss(positive[:, :1], negative, weights[:, :1])
    torch.testing.assert_close(
        one, sampled_softmax_loss(positive[:, 0], negative, weights[:, 0], negative_mask=mask)
    )


def test_left_pad_keeps_the_newest_items_at_the_end():
    padded = left_pad([np.array([1, 2, 3, 4]), np.array([5]), np.array([], np.int64)], 3, 9)
    assert padded.tolist() == [[2, 3, 4], [9, 9, 5], [9, 9, 9]]


def small_model(dropout=0.0) -> SequenceModel:
    return SequenceModel(NUM_ITEMS, 8, num_blocks=2, num_heads=2, max_history=6, dropout=dropout)


def test_the_future_never_leaks_into_an_earlier_position():
    model = small_model()
    items = torch.tensor([[20, 20, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]])
    changed = items.clone()
    changed[:, 4:] = torch.tensor([11, 12])
    before, after = model.encode(items), model.encode(changed)
    assert torch.equal(before[:, :4], after[:, :4])
    assert not torch.allclose(before[:, 4:], after[:, 4:])


def test_batch_scores_equal_single_scores():
    model = small_model()
    rng = np.random.default_rng(1)
    histories = [rng.integers(0, NUM_ITEMS, size=n) for n in (1, 3, 6, 9)]
    model.set_histories(left_pad(histories, 6, NUM_ITEMS))
    batch = model.score_users(torch.arange(4))
    single = torch.cat([model.score_users(torch.tensor([u])) for u in range(4)])
    torch.testing.assert_close(batch, single, rtol=1e-5, atol=1e-5)
    assert batch.shape == (4, NUM_ITEMS)


def test_a_blended_user_vector_is_the_sequence_output_plus_the_users_own_row():
    model = SequenceModel(NUM_ITEMS, 8, 2, 2, 6, num_users=4)
    with torch.no_grad():
        model.user_table.normal_()
    rng = np.random.default_rng(1)
    histories = left_pad([rng.integers(0, NUM_ITEMS, size=n) for n in (1, 3, 6, 9)], 6, NUM_ITEMS)
    model.set_histories(histories)
    users = torch.arange(4)
    expected = model.encode(torch.as_tensor(histories))[:, -1] + model.user_table
    with torch.no_grad():
        scores = expected @ model.item_embeddings.T + model.item_biases
    batch = model.score_users(users)
    single = torch.cat([model.score_users(torch.tensor([u])) for u in range(4)])
    torch.testing.assert_close(batch, scores, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batch, single, rtol=1e-5, atol=1e-5)
    # an unknown user (-1) has no row: the sequence output alone
    unknown = model.encode_users(histories, [-1, 1, -1, 3])
    alone = model.encode_users(histories)
    torch.testing.assert_close(unknown[[0, 2]], alone[[0, 2]])
    torch.testing.assert_close(unknown[[1, 3]], expected[[1, 3]].detach())
    # the other weights of a seed are those of a model without the table
    plain = SequenceModel(NUM_ITEMS, 8, 2, 2, 6)
    assert torch.equal(plain.item_embeddings, model.item_embeddings)
    assert torch.equal(plain.positions, model.positions)


def shared_prefix_data(num_users=40, tastes=4) -> Interactions:
    """Known answer: every user sees items 0..5 in the same order, then their own item
    ``10 + user % tastes``: after the prefix only who the user is tells what comes next."""
    rows = [(user, item, step) for user in range(num_users) for step, item in enumerate(range(6))]
    rows += [(user, 10 + user % tastes, 6) for user in range(num_users)]
    users, items, times = map(np.array, zip(*rows, strict=True))
    return Interactions.from_ids(users, np.char.add("i", items.astype(str)), timestamps=times)


def test_blend_user_learns_what_the_history_cannot_tell():
    data = shared_prefix_data()
    index = {item_id: i for i, item_id in enumerate(data.item_ids)}
    prefix = [np.array([index[f"i{item}"] for item in range(6)])] * data.num_users
    padded = torch.as_tensor(left_pad(prefix, 6, data.num_items))
    expected = np.array([f"i{10 + int(u) % 4}" for u in data.user_ids])
    rates = {}
    for blend in (False, True):
        config = dataclasses.replace(
            CONFIG, dropout=0.0, num_epochs=40, learning_rate=0.05, blend_user=blend
        )
        trainer = train_epochs(config, data, 40)
        users = torch.arange(data.num_users) if blend else None
        with torch.no_grad():
            vectors = trainer.model.user_vectors(padded, users)
            scores = vectors @ trainer.model.item_embeddings.T + trainer.model.item_biases
        scores[:, prefix[0]] = -torch.inf  # seen
        rates[blend] = float(np.mean(data.item_ids[scores.argmax(dim=1).numpy()] == expected))
    assert rates[True] == 1.0
    assert rates[False] <= 0.25  # one vector for every user: right for one taste of four


def top_next_item_rate(score_users, data: Interactions, history: Interactions) -> float:
    """Share of users whose top unseen item is the successor of their newest item."""
    sequences = UserSequences.from_interactions(history)
    newest = sequences.items[sequences.indptr[1:] - 1]
    scores = score_users(torch.arange(data.num_users)).clone()
    indptr, indices = history.to_csr()
    for user in range(data.num_users):
        scores[user, indices[indptr[user] : indptr[user + 1]]] = -torch.inf
    top = data.item_ids[scores.argmax(dim=1).numpy()]
    expected = [f"i{(int(data.item_ids[i][1:]) + 1) % NUM_ITEMS}" for i in newest]
    return float(np.mean(top == np.array(expected)))


def test_known_answer_sequence_learns_the_successor_where_matrix_factorisation_cannot():
    data = successor_data()
    train, test = temporal_split(data, 0.1)
    config = dataclasses.replace(CONFIG, num_epochs=30, dropout=0.0)
    sequence = make_trainer(train, config, CPU, horizon_epochs=30)
    mf = make_trainer(train, dataclasses.replace(config, model="sgd", embedding_dim=16), CPU, 30)
    for _ in range(30):
        sequence.run_epoch()
        mf.run_epoch()
    assert top_next_item_rate(sequence.model.score_users, data, train) == 1.0
    # MF sees each user's set of items, not their order: the walk's two ends look alike.
    assert top_next_item_rate(mf.model.score_users, data, train) <= 0.7
    seq_ndcg = evaluate(sequence.model, train, test)["ndcg@10"]
    mf_ndcg = evaluate(mf.model, train, test)["ndcg@10"]
    assert seq_ndcg > 0.9 and seq_ndcg > mf_ndcg + 0.1


def train_epochs(config, data, epochs, stop_after=None, state=None):
    trainer = SequenceTrainer(data, config, CPU, horizon_epochs=config.num_epochs)
    if state is not None:
        trainer.load_state_dict(state)
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        return stop_after is not None and calls["n"] > stop_after

    while trainer.epoch < epochs:
        if trainer.run_epoch(should_stop) is None:
            break
    return trainer


@pytest.mark.parametrize("blend_user", [False, True])
def test_resume_mid_epoch_equals_uninterrupted_with_dropout(tmp_path, blend_user):
    data = successor_data()
    config = dataclasses.replace(CONFIG, dropout=0.3, next_items=2, blend_user=blend_user)
    straight = train_epochs(config, data, 3)
    stopped = train_epochs(config, data, 3, stop_after=straight.steps_per_epoch + 2)
    assert (stopped.epoch, stopped.batch) == (1, 2)
    # through a file, loaded as a checkpoint is (no pickle)
    torch.save(stopped.state_dict(), tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    resumed = train_epochs(config, data, 3, state=state)
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


def test_same_seed_same_model_and_another_seed_differs():
    data = successor_data()
    first, second = train_epochs(CONFIG, data, 1), train_epochs(CONFIG, data, 1)
    other = train_epochs(dataclasses.replace(CONFIG, seed=7), data, 1)
    assert torch.equal(first.model.item_embeddings, second.model.item_embeddings)
    assert not torch.equal(first.model.item_embeddings, other.model.item_embeddings)


@pytest.mark.parametrize("blend_user", [False, True])
def test_pipeline_artifact_round_trip_on_the_cpu(tmp_path, blend_user):
    data = successor_data()
    config = dataclasses.replace(CONFIG, blend_user=blend_user)
    result = train_model(data, config, out=io.StringIO())
    saved = artifact_io.load(artifact_io.save(result.artifact, tmp_path / "model"))
    assert saved.config["model"] == "sequence" and saved.config["max_history"] == 6
    assert saved.config["blend_user"] is blend_user
    assert ("user_table" in saved.sequence) is blend_user
    np.testing.assert_array_equal(saved.user_embeddings, result.artifact.user_embeddings)
    for name, value in result.artifact.sequence.items():
        np.testing.assert_array_equal(saved.sequence[name], value)
    # the stored histories are each user's newest max_history items, oldest first
    sequences = UserSequences.from_interactions(data)
    indptr, items = saved.sequence[HISTORY_INDPTR], saved.sequence[HISTORY_ITEMS]
    for user in (0, 5):
        newest = sequences.items[sequences.indptr[user] : sequences.indptr[user + 1]][-6:]
        assert items[indptr[user] : indptr[user + 1]].tolist() == newest.tolist()
    # a model rebuilt from the files alone encodes those histories to the stored user vectors
    model = SequenceModel(data.num_items, 16, 1, 2, 6, num_users=data.num_users * blend_user)
    state = {k: torch.from_numpy(v) for k, v in saved.sequence.items() if "history" not in k}
    state["item_embeddings"] = torch.from_numpy(saved.item_embeddings)
    state["item_biases"] = torch.from_numpy(saved.item_biases)
    model.load_state_dict(state)
    vectors = model.encode_users(sequences.last(6), np.arange(data.num_users))
    torch.testing.assert_close(vectors, torch.from_numpy(saved.user_embeddings))
    assert not any(path.suffix == ".pkl" for path in (tmp_path / "model").iterdir())


def test_pipeline_resumed_after_a_stop_equals_uninterrupted(tmp_path):
    data = successor_data()
    expected = train_model(data, CONFIG, out=io.StringIO())
    calls = {"n": 0}

    def stop_once():
        calls["n"] += 1
        return calls["n"] == 7  # mid-way through the fit

    first = train_model(
        data, CONFIG, out=io.StringIO(), checkpoint_dir=tmp_path, should_stop=stop_once
    )
    assert first.interrupted
    resumed = train_model(data, CONFIG, out=io.StringIO(), checkpoint_dir=tmp_path)
    np.testing.assert_array_equal(
        resumed.artifact.user_embeddings, expected.artifact.user_embeddings
    )
    assert resumed.metrics == expected.metrics


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"embedding_dim": "10", "num_heads": "4"}, "not a multiple of num_heads"),
        ({"num_blocks": "0"}, "num_blocks=0 is out of range; allowed: integers 1 to 16"),
        ({"max_history": "1"}, "max_history=1 is out of range"),
        ({"dropout": "0.95"}, "dropout=0.95 is out of range; allowed: numbers 0 to 0.9"),
        ({"num_heads": "two"}, "num_heads='two' is not a number"),
        ({"next_items": "0"}, "next_items=0 is out of range; allowed: integers 1 to 4096"),
        ({"blend_user": "maybe"}, "blend_user='maybe' is not a boolean; use true or false"),
    ],
)
def test_bad_sequence_hyperparameters_say_what_is_allowed(values, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_hyperparameters({"model": "sequence", **values})


def test_the_sequence_models_own_defaults_apply_only_when_not_given():
    from mfrec.train.config import resolve_batch_size

    default = TrainConfig.from_hyperparameters({"model": "sequence"})
    assert (default.embedding_dim, default.dropout, default.blend_user) == (64, 0.5, True)
    assert resolve_batch_size(default, "cpu").batch_size == 4096
    # auto negatives: the large-batch rule's, at most the catalogue; an explicit value is kept
    trainer = SequenceTrainer(successor_data(), default, CPU, horizon_epochs=1)
    assert default.negatives > NUM_ITEMS and trainer.num_negatives == NUM_ITEMS
    explicit = dataclasses.replace(default, num_negatives=5)
    assert SequenceTrainer(successor_data(), explicit, CPU, horizon_epochs=1).num_negatives == 5
    assert (
        TrainConfig.from_hyperparameters({"model": "sequence", "embedding_dim": "32"}).embedding_dim
        == 32
    )
    assert (
        TrainConfig().embedding_dim == 128
        and resolve_batch_size(TrainConfig(), "cpu").batch_size == 1024
    )


@pytest.mark.parametrize("device", [pytest.param("cuda", id="gpu")])
def test_a_gpu_trained_model_learns_the_task_and_its_artifact_serves_on_the_cpu(device, tmp_path):
    data = successor_data()
    config = dataclasses.replace(CONFIG, device=device, num_epochs=20, dropout=0.0)
    result = train_model(data, config, out=io.StringIO())
    saved = artifact_io.load(artifact_io.save(result.artifact, tmp_path / "model"))
    scores = torch.from_numpy(saved.user_embeddings @ saved.item_embeddings.T + saved.item_biases)
    assert top_next_item_rate(lambda users: scores[users], data, data) == 1.0
