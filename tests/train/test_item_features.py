"""Item extras computed at training time: trending scores and item metadata (``items`` channel)."""

from __future__ import annotations

import gzip
import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mfrec.train.errors import ConfigError, DataValidationError
from mfrec.train.ingest import items, read_item_attributes
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


def test_csv_metadata_is_aligned_to_the_training_items(tmp_path, caplog):
    path = tmp_path / "items.csv"
    path.write_text(
        "ITEM_ID,TITLE,GENRES\n"
        '30,"Three, the film",Comedy|Drama\n'
        "10, One ,Horror\n"
        "99,Not trained,Comedy\n"
        "98,Not trained either,\n"
        "20,Two,\n"
    )
    with caplog.at_level(logging.INFO, logger="mfrec.train"):
        attributes = read_item_attributes(path, ITEM_IDS)
    assert list(attributes) == ["TITLE", "GENRES"]
    assert attributes["TITLE"].tolist() == ["One", "Two", "Three, the film", ""]
    assert attributes["GENRES"].tolist() == ["Horror", "", "Comedy|Drama", ""]
    assert attributes["GENRES"].dtype.kind == "U"
    assert "3 of 4 training items described" in caplog.text
    assert "ignored 2 rows of items that are not in the training interactions" in caplog.text


@pytest.mark.parametrize("name", ["item_id", "ITEM_ID", "itemId", "movieId"])
def test_item_id_column_spellings(tmp_path, name):
    path = tmp_path / "items.csv"
    path.write_text(f"genre,{name}\nDrama,40\nComedy,10\n")
    assert read_item_attributes(path, ITEM_IDS)["genre"].tolist() == ["Comedy", "", "", "Drama"]


def test_gzip_tsv_parquet_and_json_lines_in_one_folder(tmp_path):
    folder = tmp_path / "items"
    folder.mkdir()
    with gzip.open(folder / "a.tsv.gz", "wt") as f:
        f.write("item_id\tgenre\n10\tHorror\n")
    table = pa.table({"item_id": [20], "genre": [["Comedy", "Drama"]], "year": [1999]})
    pq.write_table(table, folder / "b.parquet")
    (folder / "c.jsonl").write_text(json.dumps({"item_id": 30, "genre": "Drama"}) + "\n")
    (folder / "_SUCCESS").write_text("")
    attributes = read_item_attributes(folder, ITEM_IDS)
    assert attributes["genre"].tolist() == ["Horror", "Comedy|Drama", "Drama", ""]
    assert attributes["year"].tolist() == ["", "1999", "", ""]


def test_item_extras_holds_trending_and_prefixed_attributes(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("item_id,genre\n10,Horror\n")
    extras = item_extras(interactions([0, 1], [0, 7]), path, 7.0)
    assert sorted(extras) == ["item_attribute.genre", "item_trending"]
    np.testing.assert_allclose(extras["item_trending"], [1.0, 0.5, 0.0, 0.0])
    assert sorted(item_extras(interactions([0]))) == ["item_trending"]


def test_too_long_attribute_is_left_out_with_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(items, "MAX_ATTRIBUTE_BYTES", 1000)
    path = tmp_path / "items.csv"
    path.write_text(f"item_id,genre,description\n10,Horror,{'x' * 300}\n")
    with caplog.at_level(logging.WARNING, logger="mfrec.train"):
        attributes = read_item_attributes(path, ITEM_IDS)
    assert list(attributes) == ["genre"]
    assert "attribute 'description' left out: its longest value has 300 characters" in caplog.text


@pytest.mark.parametrize(
    "text, message",
    [
        ("title,genre\nOne,Horror\n", r"has no item id column \(columns: title, genre\)"),
        ("10,Horror\n20,Comedy\n", "give it a header row naming the item id column"),
        ("item_id,genre\n10,Horror\n10,Comedy\n", r"1 repeated item id\(s\) \(e.g. '10'\)"),
        ("item_id,genre\n10,Horror\n,Comedy\n", r"1 row\(s\) have an empty item id \(line 3\)"),
        ("item_id,genre\n10,Horror\n20,Comedy,extra\n", r"line 3: .* has 3 fields, not 2"),
        ("item_id,genre,genre\n10,Horror,Drama\n", r"repeated column names \(genre\)"),
        ("item_id,\n10,\n", "has only the item id column; add attribute columns"),
        ("item_id\n10\n", "item metadata file items.csv: .*cannot find a delimiter"),
    ],
)
def test_malformed_metadata_says_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "items.csv"
    path.write_text(text)
    with pytest.raises(DataValidationError, match=message):
        read_item_attributes(path, ITEM_IDS)


def test_missing_metadata_path_is_explained(tmp_path):
    with pytest.raises(DataValidationError, match="no item metadata file found at .*item_id"):
        read_item_attributes(tmp_path / "nowhere", ITEM_IDS)
