"""Item metadata files (the ``items`` channel) read and aligned to the training items."""

from __future__ import annotations

import gzip
import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mfrec.train.errors import DataValidationError
from mfrec.train.ingest import items, read_item_attributes

ITEM_IDS = np.array(["10", "20", "30", "40"])


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


def test_ids_keep_leading_zeros_and_columns_their_trimmed_names(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("item_id, genre ,\n007,Horror,\n7,Comedy,\n")  # a trailing delimiter
    attributes = read_item_attributes(path, np.array(["7", "007", "8"]))
    assert list(attributes) == ["genre"]  # the unnamed last column is dropped
    assert attributes["genre"].tolist() == ["Comedy", "Horror", ""]


def test_integer_training_ids_match_text_ids(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("item_id,genre\n20,Comedy\n")
    assert read_item_attributes(path, np.array([10, 20]))["genre"].tolist() == ["", "Comedy"]


def test_a_folder_of_blank_files_asks_for_the_data(tmp_path):
    (tmp_path / "a.csv").write_text("\n\n")
    (tmp_path / "b.csv").write_text("  \n")
    with pytest.raises(DataValidationError, match="every item metadata file under .* is empty"):
        read_item_attributes(tmp_path, ITEM_IDS)


def test_an_item_described_in_two_files_is_refused(tmp_path):
    (tmp_path / "a.csv").write_text("item_id,genre\n10,Horror\n20,Drama\n")
    (tmp_path / "b.csv").write_text("item_id,genre\n30,Comedy\n20,Drama\n")
    with pytest.raises(
        DataValidationError, match=r"1 repeated item id\(s\) \(e\.g\. '20'\); keep one row per item"
    ):
        read_item_attributes(tmp_path, ITEM_IDS)


def test_messages_name_the_file_relative_to_the_folder(tmp_path):
    (tmp_path / "part").mkdir()
    (tmp_path / "part" / "items.json").write_text('[{"item_id": 10}]')
    with pytest.raises(
        DataValidationError, match=r"item metadata file part/items\.json: .*holds a JSON array"
    ):
        read_item_attributes(tmp_path, ITEM_IDS)


def test_a_json_lines_file_with_a_null_id_points_at_its_row(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text('{"item_id": 10, "genre": "a"}\n{"item_id": null, "genre": "b"}\n')
    with pytest.raises(DataValidationError, match=r"1 row\(s\) have an empty item id \(row 2\)"):
        read_item_attributes(path, ITEM_IDS)
