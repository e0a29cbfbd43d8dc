"""Serving a sequence model (model=sequence) through the Recommender: a known user from their
stored history, a fresh ``history`` encoded directly, and every other request type."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch

from mfrec.serve.recommender import Recommender
from mfrec.serve.requests import Request
from mfrec.train import artifact as artifact_io
from mfrec.train.config import TrainConfig
from mfrec.train.interactions import Interactions
from mfrec.train.pipeline import train_model
from mfrec.train.sequences import left_pad

pytestmark = pytest.mark.usefixtures("one_thread")

NUM_ITEMS = 16
CONFIG = TrainConfig(
    model="sequence",
    embedding_dim=16,
    num_heads=2,
    num_blocks=1,
    max_history=16,  # longer than any user's history: the stored history is all they saw
    batch_size=64,
    num_negatives=8,
    num_epochs=25,
    recency_min_weight=1.0,
    dropout=0.0,
    validation_fraction=0.0,
    blend_user=False,  # a known user = their stored history sent as a fresh one
)


def successor_walks(num_users=48, seed=3) -> Interactions:
    """Every user walks the ring of items ``i0 .. i15``, always from item i to item i + 1."""
    rng = np.random.default_rng(seed)
    rows = [
        (f"u{user}", f"i{(start + step) % NUM_ITEMS}", step)
        for user in range(num_users)
        for start, length in [(rng.integers(NUM_ITEMS), rng.integers(4, 9))]
        for step in range(length)
    ]
    users, items, times = map(np.array, zip(*rows, strict=True))
    return Interactions.from_ids(users, items, timestamps=times.astype(np.int64))


def successor(item_id: str, steps: int = 1) -> str:
    return f"i{(int(item_id[1:]) + steps) % NUM_ITEMS}"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data = successor_walks()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module-scoped: the one_thread fixture is not active yet
    try:
        result = train_model(data, CONFIG, out=io.StringIO())
    finally:
        torch.set_num_threads(threads)
    folder = artifact_io.save(result.artifact, tmp_path_factory.mktemp("model"))
    return Recommender.from_dir(folder, device="cpu"), data


def newest_item(recommender: Recommender, user_id: str) -> str:
    encoder = recommender.tensors.sequence
    history = encoder.stored_history(recommender.user_index[user_id])
    return str(recommender.item_ids[history[-1]])


def test_a_known_user_gets_the_item_after_their_newest(served):
    recommender, _ = served
    users = ["u0", "u1", "u2", "u3"]
    for user, answer in zip(users, recommender.recommend(users, top_n=3), strict=True):
        assert answer.error is None and answer.item_ids[0] == successor(
            newest_item(recommender, user)
        )


def test_a_known_user_equals_their_stored_history_sent_as_a_fresh_one(served):
    recommender, _ = served
    encoder = recommender.tensors.sequence
    user = "u5"
    stored = encoder.stored_history(recommender.user_index[user])
    history = tuple(str(i) for i in recommender.item_ids[stored])
    known, fresh = recommender.answer(
        [Request("user", user, top_n=5), Request("history", "nobody", history=history, top_n=5)]
    )
    assert known.item_ids.tolist() == fresh.item_ids.tolist()
    np.testing.assert_allclose(known.scores, fresh.scores, atol=1e-5)


def test_a_fresh_history_is_encoded_in_order_without_fold_in(served):
    recommender, _ = served
    forward, backward = recommender.answer(
        [
            Request("history", history=("i3", "i4", "i5"), top_n=2),
            Request("history", history=("i9", "i8", "i7"), top_n=2),
        ]
    )
    assert forward.item_ids[0] == "i6"
    assert backward.item_ids.tolist() != forward.item_ids.tolist()


def test_a_known_users_history_request_continues_their_stored_history(served):
    recommender, _ = served
    newest = newest_item(recommender, "u7")
    (answer,) = recommender.answer(
        [Request("history", "u7", history=(successor(newest),), top_n=1, exclude_seen=False)]
    )
    assert answer.item_ids[0] == successor(newest, 2)


def test_batched_history_requests_equal_single_ones(served):
    recommender, _ = served
    requests = [
        Request("history", history=tuple(f"i{(s + k) % NUM_ITEMS}" for k in range(n)), top_n=4)
        for s, n in [(0, 1), (5, 3), (9, 6), (2, 2)]
    ] + [Request("history", "u1", history=("i1",), top_n=4)]
    batch = recommender.answer(requests)
    for request, answer in zip(requests, batch, strict=True):
        (single,) = recommender.answer([request])
        assert single.item_ids.tolist() == answer.item_ids.tolist()
        np.testing.assert_allclose(single.scores, answer.scores, atol=1e-5)


def test_every_other_request_type_works_on_a_sequence_model(served):
    recommender, _ = served
    similar, ranked, popular, unknown_item = recommender.answer(
        [
            Request("similar_items", item_id="i3", top_n=3),
            Request("rank", "u0", item_ids=("i1", "i2", "i3", "nope")),
            Request("popular", top_n=4),
            Request("history", history=("nope",), top_n=3),
        ]
    )
    assert similar.error is None and len(similar.item_ids) == 3 and "i3" not in similar.item_ids
    assert ranked.error is None and ranked.item_ids[-1] == "nope"
    assert popular.error is None and len(popular.item_ids) == 4
    assert unknown_item.note and "most popular" in unknown_item.note


@pytest.fixture(scope="module")
def blended(tmp_path_factory):
    data = successor_walks()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = dataclasses.replace(CONFIG, blend_user=True, num_epochs=5)
        result = train_model(data, config, out=io.StringIO())
    finally:
        torch.set_num_threads(threads)
    folder = artifact_io.save(result.artifact, tmp_path_factory.mktemp("blended"))
    return Recommender.from_dir(folder, device="cpu")


def test_blend_user_known_users_add_their_row_and_fresh_users_have_none(blended):
    recommender = blended
    encoder = recommender.tensors.sequence
    model, table = encoder.model, encoder.model.user_table.detach()
    user = recommender.user_index["u5"]
    stored = encoder.stored_history(user)
    items = model.item_embeddings.detach()
    biases = model.item_biases.detach()
    history = tuple(str(i) for i in recommender.item_ids[stored])
    known, fresh, more = recommender.answer(
        [
            Request("user", "u5", top_n=NUM_ITEMS, exclude_seen=False),
            Request("history", "nobody", history=history, top_n=NUM_ITEMS, exclude_seen=False),
            Request("history", "u5", history=("i2",), top_n=NUM_ITEMS, exclude_seen=False),
        ]
    )
    encoded = model.encode_users(left_pad([stored], encoder.max_history, NUM_ITEMS))[0]
    continued = np.append(stored, list(recommender.item_ids).index("i2"))
    longer = model.encode_users(left_pad([continued], encoder.max_history, NUM_ITEMS))[0]
    cases = [(known, encoded + table[user]), (fresh, encoded), (more, longer + table[user])]
    for answer, vector in cases:
        expected = (vector @ items.T + biases).numpy()
        position = {item_id: i for i, item_id in enumerate(recommender.item_ids)}
        order = [position[i] for i in answer.item_ids]
        np.testing.assert_allclose(answer.scores, expected[order], atol=1e-4)


def test_blend_user_batched_history_requests_equal_single_ones(blended):
    requests = [
        Request("history", history=("i3", "i4"), top_n=4),
        Request("history", "u1", history=("i1",), top_n=4),
        Request("history", "u2", history=(), top_n=4),
        Request("user", "u3", top_n=4),
    ]
    batch = blended.answer(requests)
    for request, answer in zip(requests, batch, strict=True):
        (single,) = blended.answer([request])
        assert answer.error is None and single.item_ids.tolist() == answer.item_ids.tolist()
        np.testing.assert_allclose(single.scores, answer.scores, atol=1e-5)
