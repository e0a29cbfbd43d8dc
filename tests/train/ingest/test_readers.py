"""Reading one sniffed file into an Arrow table: column types, bad rows and their line numbers."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mfrec.train.errors import DataValidationError
from mfrec.train.ingest.formats import sniff
from mfrec.train.ingest.readers import MAX_EXAMPLES, read_source

NAMES = ["user_id", "item_id", "rating"]


def read(path: Path, content: str, columns=NAMES, text_columns=("user_id", "item_id")):
    path.write_text(content)
    return read_source(sniff(path), columns, text_columns)


def test_text_columns_stay_strings_and_the_others_are_typed(tmp_path):
    raw = read(tmp_path / "d.csv", "user_id,item_id,rating,note\n007,10,5,a\n7,010,3,b\n")
    assert raw.table.column_names == NAMES  # the unwanted column is not read
    assert raw.table.to_pydict() == {
        "user_id": ["007", "7"],
        "item_id": ["10", "010"],
        "rating": [5, 3],
    }
    assert raw.table.schema.types == [pa.string(), pa.string(), pa.int64()]
    assert (raw.bad_row_count, raw.bad_row_examples) == (0, [])


def test_empty_text_fields_are_empty_strings_not_nulls(tmp_path):
    raw = read(tmp_path / "d.csv", "user_id,item_id,rating\n,10,5\nu2,,\n")
    assert raw.table.column("user_id").to_pylist() == ["", "u2"]
    assert raw.table.column("item_id").to_pylist() == ["10", ""]
    assert raw.table.column("rating").to_pylist() == [5, None]


def test_rows_with_the_wrong_field_count_are_counted_with_their_physical_lines(tmp_path):
    text = "user_id,item_id,rating\n007,1,5\n\n8,2\n9,3,4\n10,4,3,extra\n11,5,2\n"
    raw = read(tmp_path / "d.csv", text)
    assert raw.table.column("user_id").to_pylist() == ["007", "9", "11"]
    assert raw.bad_row_count == 2
    assert raw.bad_row_examples == [
        "line 4: '8,2' has 2 fields, not 3",
        "line 6: '10,4,3,extra' has 4 fields, not 3",
    ]
    # Data rows 0, 1, 2 sit on lines 2, 5 and 7: the header, the blank line and bad rows count.
    assert raw.locate([0, 1, 2]) == ["line 2", "line 5", "line 7"]


def test_only_the_first_bad_rows_are_quoted(tmp_path):
    lines = ["user_id,item_id,rating"] + [f"u{k},i{k}" for k in range(MAX_EXAMPLES + 3)]
    raw = read(tmp_path / "d.csv", "\n".join([*lines, "u,i,1"]) + "\n")
    assert raw.bad_row_count == MAX_EXAMPLES + 3
    assert len(raw.bad_row_examples) == MAX_EXAMPLES
    assert raw.bad_row_examples[0] == "line 2: 'u0,i0' has 2 fields, not 3"
    assert raw.locate([0]) == [f"line {len(lines) + 1}"]


def test_double_colon_files_and_their_bad_lines_show_the_real_delimiter(tmp_path):
    path = tmp_path / "ratings.dat"
    path.write_text("1::10::5\n2::20\n3::30::4\n4::40::1\n")
    source = sniff(path)
    assert source.delimiter == "::" and not source.has_header
    raw = read_source(source, ["column_1", "column_2", "column_3"], ["column_1", "column_2"])
    assert raw.table.to_pydict() == {
        "column_1": ["1", "3", "4"],
        "column_2": ["10", "30", "40"],
        "column_3": [5, 4, 1],
    }
    assert raw.bad_row_examples == ["line 2: '2::20' has 2 fields, not 3"]
    assert raw.locate([0, 1, 2]) == ["line 1", "line 3", "line 4"]


def test_a_file_that_is_not_utf8_past_the_sample_is_read_again_as_latin1(tmp_path, caplog):
    path = tmp_path / "d.csv"
    path.write_text("user_id,item_id,rating\nu1,i1,1\n")
    source = sniff(path)  # utf-8 from the sample...
    path.write_bytes(b"user_id,item_id,rating\nu1,i1,1\nJos\xe9,i2,2\n")  # ...but not after it
    with caplog.at_level(logging.WARNING, logger="mfrec.train"):
        raw = read_source(source, NAMES, ["user_id", "item_id"])
    assert raw.table.column("user_id").to_pylist() == ["u1", "José"]
    assert "d.csv is not valid UTF-8: reading it as latin-1" in caplog.text


def test_parquet_columns_are_read_with_their_own_types(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"user_id": [1, 2], "item_id": ["a", "b"], "x": [0.5, 1.5]}), path)
    raw = read_source(sniff(path), ["user_id", "item_id"], ["user_id", "item_id"])
    assert raw.table.to_pydict() == {"user_id": [1, 2], "item_id": ["a", "b"]}
    assert raw.table.schema.field("user_id").type == pa.int64()
    assert raw.locate([0, 1]) == ["row 1", "row 2"]


def test_json_lines_keep_the_wanted_columns_present_in_the_file(tmp_path):
    lines = [{"user_id": 1, "item_id": "a", "extra": [1]}, {"user_id": 2, "item_id": "b"}]
    path = tmp_path / "d.jsonl"
    raw = read(path, "".join(json.dumps(line) + "\n" for line in lines), ["user_id", "item_id"])
    assert raw.table.to_pydict() == {"user_id": [1, 2], "item_id": ["a", "b"]}
    assert raw.bad_row_count == 0


def test_json_lines_with_mixed_types_or_broken_lines_are_read_line_by_line(tmp_path):
    text = (
        '{"user_id": 1, "item_id": "x"}\n'
        '{"user_id": "u2", "item_id": 7.0}\n'
        "oops\n"
        "[1, 2]\n"
        '{"user_id": true, "item_id": 1.5, "tags": ["a"]}\n'
    )
    raw = read(tmp_path / "d.jsonl", text, ["user_id", "item_id", "missing"])
    # Every cell is text: 7.0 is the id "7", other non-strings their JSON text, absent is null.
    assert raw.table.to_pydict() == {
        "user_id": ["1", "u2", "true"],
        "item_id": ["x", "7", "1.5"],
        "missing": [None, None, None],
    }
    assert raw.bad_row_count == 2
    assert raw.bad_row_examples == [
        "line 3: 'oops' is not a JSON object",
        "line 4: '[1, 2]' is not a JSON object",
    ]


def test_an_unreadable_file_names_its_sniffed_type(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"user_id": [1], "item_id": [2]}), path)
    source = sniff(path)
    path.write_bytes(path.read_bytes()[:-20])  # truncated after sniffing
    with pytest.raises(
        DataValidationError, match=r"d\.parquet: cannot be read as parquet \(.*re-export it"
    ):
        read_source(source, ["user_id"], [])


def test_a_gzip_file_cut_short_is_a_data_error(tmp_path):
    path = tmp_path / "d.csv.gz"
    payload = gzip.compress(("user_id,item_id\n" + "u,i\n" * 5000).encode())
    path.write_bytes(payload)
    source = sniff(path)
    path.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(
        DataValidationError, match=r"cannot be read as delimited text, gzip, comma-separated"
    ):
        read_source(source, ["user_id", "item_id"], ["user_id", "item_id"])
