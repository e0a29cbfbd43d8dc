"""Splits: the seed protocol's temporal hold-out and re-indexing a validation set."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from mfrec.train.interactions import Interactions
from mfrec.train.split import align_to, temporal_split


def make_data(seed=0, timestamps=True) -> Interactions:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 30, size=600)
    items = rng.integers(0, 50, size=600)
    stamps = rng.integers(0, 40, size=600) if timestamps else None  # many equal timestamps
    return Interactions.from_ids(users, items, timestamps=stamps)


def test_matches_the_pandas_rank_definition():
    data = make_data()
    train, test = temporal_split(data, 0.1)
    frame = pd.DataFrame({"u": data.user_idx, "t": data.timestamps})
    expected = frame.groupby("u")["t"].rank(pct=True, method="first") > 0.9
    assert len(test) == int(expected.sum()) and len(train) + len(test) == len(data)
    held = data.subset(expected.to_numpy())
    np.testing.assert_array_equal(test.user_idx, held.user_idx)
    np.testing.assert_array_equal(test.item_idx, held.item_idx)


def test_never_leaks_the_future_and_breaks_ties_by_file_order():
    data = make_data(1)
    train, test = temporal_split(data, 0.2)
    position = np.arange(len(data))
    train_rows = position[~np.isin(position, _rows(data, test))]
    for user in np.unique(test.user_idx):
        mine = data.user_idx == user
        kept = train_rows[mine[train_rows]]
        held = _rows(data, test)[test.user_idx == user]
        # (timestamp, position) of every kept row precedes that of every held-out row.
        last_kept = max(zip(data.timestamps[kept], kept, strict=True))
        first_held = min(zip(data.timestamps[held], held, strict=True))
        assert last_kept < first_held


def _rows(data: Interactions, part: Interactions) -> np.ndarray:
    """Row positions in ``data`` of the rows of ``part`` (a subset keeping row order)."""
    frame = pd.DataFrame(
        {"u": data.user_idx, "i": data.item_idx, "t": data.timestamps, "pos": np.arange(len(data))}
    )
    mask = np.zeros(len(data), dtype=bool)
    train_or_test = pd.DataFrame({"u": part.user_idx, "i": part.item_idx, "t": part.timestamps})
    merged = frame.merge(train_or_test.drop_duplicates(), on=["u", "i", "t"])
    mask[merged["pos"].to_numpy()] = True
    return np.flatnonzero(mask)


def test_keeps_index_spaces_and_holds_out_the_last_tenth_of_each_user():
    data = Interactions.from_ids(
        ["a"] * 10 + ["b"] * 15 + ["c"] * 3, [str(i) for i in range(28)], timestamps=range(28)
    )
    train, test = temporal_split(data, 0.1)
    assert train.num_users == test.num_users == 3 and test.num_items == 28
    # a keeps 9 of 10, b 13 of 15; every user's last row has rank 1.0 and is held out.
    assert np.bincount(test.user_idx, minlength=3).tolist() == [1, 2, 1]
    assert test.item_idx.tolist() == [9, 23, 24, 27]


def test_without_timestamps_uses_file_order_and_says_so(caplog):
    data = make_data(2, timestamps=False)
    with caplog.at_level(logging.INFO, logger="mfrec.train"):
        train, test = temporal_split(data, 0.1)
    assert "no timestamps" in caplog.text
    for user in np.unique(test.user_idx):
        positions = np.flatnonzero(data.user_idx == user)
        count = len(positions)
        held = int(count - np.floor(count * 0.9 + 1e-9))
        assert (
            test.item_idx[test.user_idx == user].tolist()
            == data.item_idx[positions[count - held :]].tolist()
        )


def test_align_to_reindexes_and_counts_what_it_drops():
    reference = Interactions.from_ids(["a", "b", "c"], ["x", "y", "z"])
    other = Interactions.from_ids(
        ["c", "a", "new", "b", "new"], ["x", "nope", "y", "z", "nope"], timestamps=[1, 2, 3, 4, 5]
    )
    aligned, dropped = align_to(other, reference)
    assert dropped == {"unknown_user_rows": 2, "unknown_item_rows": 1, "kept_rows": 2}
    assert aligned.user_ids is reference.user_ids and aligned.item_ids is reference.item_ids
    assert aligned.user_ids[aligned.user_idx].tolist() == ["c", "b"]
    assert aligned.item_ids[aligned.item_idx].tolist() == ["x", "z"]
    assert aligned.timestamps.tolist() == [1, 4]


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_fraction_bounds(fraction):
    data = make_data(3)
    train, test = temporal_split(data, fraction)
    assert len(train) + len(test) == len(data)
    if fraction == 0.0:
        assert len(test) == 0
