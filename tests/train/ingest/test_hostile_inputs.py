"""Hostile but fair interaction files: each is refused with one line that names the problem and
where it is (issue 17: timestamps outside years 1-9999, repeated headers, UTF-16 without a BOM,
binary data, a line longer than a read block), never an internal error."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mfrec.train.errors import DataValidationError
from mfrec.train.ingest import ImportOptions, load_interactions
from mfrec.train.ingest.converters import MAX_SECONDS, MIN_SECONDS, to_unix_seconds
from mfrec.train.ingest.readers import MAX_LINE_BYTES

HEADER = "user_id,item_id,timestamp"


def good_lines(n: int = 1_100) -> list[str]:
    return [HEADER] + [f"u{k % 50},i{k % 97},{1600000000 + k}" for k in range(n)]


def write(path, lines: list[str]):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- timestamps outside the years 1 to 9999 ---------------------------------------------------


def test_the_bounds_are_the_first_and_last_second_that_dates_can_show():
    first = dt.datetime.fromtimestamp(MIN_SECONDS, tz=dt.timezone.utc)
    last = dt.datetime.fromtimestamp(MAX_SECONDS, tz=dt.timezone.utc)
    assert (first.year, first.month, first.day, first.hour) == (1, 1, 1, 0)
    assert (last.year, last.month, last.day, last.second) == (9999, 12, 31, 59)


@pytest.mark.parametrize("value", ["253402300800", "-62135596801", "1e300", "-1e300"])
def test_a_timestamp_outside_the_years_1_to_9999_is_a_bad_value_naming_its_line(tmp_path, value):
    lines = good_lines()
    lines[10] = f"u1,i2,{value}"
    path = write(tmp_path / "d.csv", lines)
    with pytest.raises(
        DataValidationError,
        match=r"d\.csv: 1 row\(s\) have bad values \(1 with a timestamp outside the years 1 to "
        r"9999\): line 11: timestamp .*--on-bad-rows skip",
    ):
        load_interactions(path)
    data, report = load_interactions(path, ImportOptions(on_bad_rows="skip"))
    assert len(data) == 1_099
    assert report.time_range["end"].startswith("2020-09-13")  # the report's dates still print
    assert report.dropped == {"rows with a timestamp outside the years 1 to 9999 skipped": 1}


def test_the_bounds_themselves_are_accepted():
    seconds = to_unix_seconds(pa.array([MIN_SECONDS, MAX_SECONDS, 0], pa.int64()))
    assert not seconds.bad.any() and not seconds.out_of_range.any()
    assert seconds.values.tolist() == [MIN_SECONDS, MAX_SECONDS, 0]


def test_out_of_range_parquet_timestamps_of_every_type(tmp_path):
    """Integers, floats and Arrow timestamps: each is checked after conversion to seconds."""
    n = 1_100
    columns = {
        "user_id": [f"u{k % 50}" for k in range(n)],
        "item_id": [f"i{k % 97}" for k in range(n)],
    }
    cases = {
        "ints": pa.array([1_600_000_000] * (n - 1) + [2**62], pa.int64()),
        "floats": pa.array([1.6e9] * (n - 1) + [1e300], pa.float64()),
        "seconds": pa.array([1_600_000_000] * (n - 1) + [MAX_SECONDS + 1], pa.timestamp("s")),
    }
    for name, timestamps in cases.items():
        table = pa.table({**columns, "timestamp": timestamps})
        pq.write_table(table, tmp_path / f"{name}.parquet")
        with pytest.raises(DataValidationError, match=r"outside the years 1 to 9999\): row 1100"):
            load_interactions(tmp_path / f"{name}.parquet")


# --- repeated header names --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "repeated"),
    [
        ("user_id,item_id,item_id", "'item_id'"),
        ("user_id,user_id,item_id,item_id", "'item_id', 'user_id'"),
    ],
)
def test_a_repeated_header_name_is_refused_listing_the_repeats(tmp_path, header, repeated):
    width = header.count(",") + 1
    lines = [header] + [
        ",".join([f"u{k % 40}", f"i{k % 30}", "x", "y"][:width]) for k in range(1100)
    ]
    with pytest.raises(
        DataValidationError,
        match=rf"d\.csv: the header repeats the column name\(s\) {repeated} .*own name",
    ):
        load_interactions(write(tmp_path / "d.csv", lines))


def test_a_repeated_parquet_column_is_refused(tmp_path):
    table = pa.Table.from_arrays(
        [pa.array(["u1", "u2"]), pa.array(["i1", "i2"]), pa.array(["i3", "i4"])],
        names=["user_id", "item_id", "item_id"],
    )
    pq.write_table(table, tmp_path / "d.parquet")
    with pytest.raises(DataValidationError, match=r"repeats the column name\(s\) 'item_id'"):
        load_interactions(tmp_path / "d.parquet")


# --- encodings and binary data ----------------------------------------------------------------


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_bom_is_named(tmp_path, codec):
    path = tmp_path / "d.csv"
    path.write_bytes(("\n".join(good_lines()) + "\n").encode(codec))
    order = codec[-2:].upper()
    with pytest.raises(
        DataValidationError,
        match=rf"looks like UTF-16 text \({order}\) without a byte-order mark.*Save it as UTF-8",
    ):
        load_interactions(path)


def test_utf16_with_a_bom_is_still_read(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(("\n".join(good_lines()) + "\n").encode("utf-16"))
    data, _ = load_interactions(path)
    assert len(data) == 1_100


def test_binary_data_with_nul_bytes_is_not_text(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(np.random.default_rng(0).integers(1, 256, 4000, dtype=np.uint8).tobytes())
    path.write_bytes(path.read_bytes()[:1000] + b"\0" + path.read_bytes()[1000:])
    with pytest.raises(DataValidationError, match=r"holds NUL bytes \(first at byte 1,000\)"):
        load_interactions(path)


# --- a line longer than a read block ----------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_a_line_longer_than_a_block_is_named(tmp_path, suffix):
    import gzip

    lines = good_lines()
    lines[700] = "u1," + "x" * (2 * MAX_LINE_BYTES + 10) + ",1600000000"
    text = ("\n".join(lines) + "\n").encode()
    path = tmp_path / f"d{suffix}"
    path.write_bytes(gzip.compress(text, compresslevel=1) if suffix.endswith(".gz") else text)
    with pytest.raises(
        DataValidationError,
        match=rf"line 701 is too long \({2 * MAX_LINE_BYTES + 24:,} bytes; mfrec cannot read "
        rf"lines over {MAX_LINE_BYTES:,} bytes\)",
    ):
        load_interactions(path)


def test_iso_dates_beyond_nanosecond_range_keep_their_value():
    """pandas reads text in microseconds; a cast to nanoseconds silently wrapped 2300 to 1715."""
    text = ["2300-01-01T00:00:00Z", "1600-01-01", "9999-12-31T23:59:59", "0001-01-01"]
    seconds = to_unix_seconds(pa.array(text))
    expected = [
        int(dt.datetime.fromisoformat(t.rstrip("Z")).replace(tzinfo=dt.timezone.utc).timestamp())
        for t in text
    ]
    assert seconds.values.tolist() == expected
    assert not seconds.bad.any() and not seconds.out_of_range.any()


# --- JSON objects where ids, values and attributes belong -------------------------------------


def test_json_objects_as_ids_are_bad_values_not_an_internal_error(tmp_path):
    import json

    lines = [json.dumps({"user_id": {"a": k}, "item_id": [k, 2]}) for k in range(1_100)]
    write(tmp_path / "d.jsonl", lines)
    with pytest.raises(
        DataValidationError,
        match=r"1100 with a user id that is a JSON object or list \(struct<a: int64>\), not a "
        r"string or number\): row 1: user \{'a': 0\}",
    ):
        load_interactions(tmp_path / "d.jsonl")


def test_json_objects_as_item_attributes_are_kept_as_json_text(tmp_path):
    import json

    from mfrec.train.ingest import read_item_attributes

    rows = [{"item_id": "i1", "genre": {"main": "Comedy"}}, {"item_id": "i2", "genre": None}]
    write(tmp_path / "items.jsonl", [json.dumps(row) for row in rows])
    genre = read_item_attributes(tmp_path / "items.jsonl", np.array(["i1", "i2"]))["genre"]
    assert genre.tolist() == ['{"main": "Comedy"}', ""]


def test_an_infinite_timestamp_is_out_of_range_not_missing():
    seconds = to_unix_seconds(pa.array([1.6e9, float("inf"), float("nan")]))
    assert seconds.out_of_range.tolist() == [False, True, False]
    assert seconds.bad.tolist() == [False, False, True]


def test_a_header_without_rows_says_so(tmp_path):
    write(tmp_path / "d.csv", [HEADER])
    with pytest.raises(
        DataValidationError, match=r"the files hold no data rows \(d\.csv: a header"
    ):
        load_interactions(tmp_path / "d.csv")
