"""Item extras computed at training time: trending scores and the stored item attributes.

Reading the metadata files themselves is tested in ``tests/train/ingest/test_items.py``.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from mfrec.train.errors import ConfigError
from mfrec.train.interactions import Interactions
from mfrec.train.item_features import item_extras, parse_half_life, trending_scores

DAY = 86_400
NOW = 1_700_000_000
ITEM_IDS = np.array(["10", "20", "30", "40"])


def interactions(item_idx, ages_days=None) -> Interactions:
    """One user per row; ``ages_days`` before NOW (the newest row should have age 0)."""
    item_idx = np.asarray(item_idx, dtype=np.int64)
    timestamps = None
    if ages_days is not None:
        timestamps = (NOW - np.asarray(ages_days, dtype=np.float64) * DAY).astype(np.int64)
    return Interactions(
        user_idx=np.arange(len(item_idx), dtype=np.int64),
        item_idx=item_idx,
        user_ids=np.array([f"u{k}" for k in range(len(item_idx))]),
        item_ids=ITEM_IDS,
        timestamps=timestamps,
    )


def test_trending_halves_the_weight_of_an_interaction_every_half_life():
    # item 0: one row now; item 1: 7 and 14 days old; item 2: three rows 21 days old; item 3: none
    data = interactions([0, 1, 1, 2, 2, 2], [0, 7, 14, 21, 21, 21])
    np.testing.assert_allclose(trending_scores(data, 7.0), [1.0, 0.75, 0.375, 0.0])
    np.testing.assert_allclose(trending_scores(data, 14.0), [1.0, 2**-0.5 + 0.5, 3 * 2**-1.5, 0.0])
    # popularity says item 2 (3 rows); a week's half-life says item 0, the newest
    assert data.item_counts().argmax() == 2 and trending_scores(data).argmax() == 0


def test_trending_ages_are_relative_to_the_newest_timestamp_not_the_clock():
    old = interactions([0, 1], [0, 7])
    older = Interactions(**{**old.__dict__, "timestamps": old.timestamps - 3650 * DAY})
    np.testing.assert_allclose(trending_scores(older), [1.0, 0.5, 0.0, 0.0])


def test_trending_without_timestamps_is_the_plain_count(caplog):
    data = interactions([0, 1, 1, 3])
    with caplog.at_level(logging.INFO, logger="mfrec.train"):
        scores = trending_scores(data)
    np.testing.assert_array_equal(scores, [1.0, 2.0, 0.0, 1.0])
    assert scores.dtype == np.float64
    assert "no timestamps: trending items are the plain interaction counts" in caplog.text


@pytest.mark.parametrize("text", ["0", "-1", "abc", "inf", "nan", ""])
def test_bad_half_life_is_a_config_error(text):
    with pytest.raises(ConfigError, match="trending_half_life_days must be a number of days"):
        parse_half_life(text)


def test_half_life_parses_numbers():
    assert parse_half_life(" 0.5 ") == 0.5 and parse_half_life("7") == 7.0


def test_item_extras_holds_trending_and_prefixed_attributes(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("item_id,genre\n10,Horror\n")
    extras = item_extras(interactions([0, 1], [0, 7]), path, 7.0)
    assert sorted(extras) == ["item_attribute.genre", "item_trending", "seen_timestamps"]
    np.testing.assert_allclose(extras["item_trending"], [1.0, 0.5, 0.0, 0.0])
    assert sorted(item_extras(interactions([0]))) == ["item_trending"]
