"""Every way interaction files can be refused, and what the message tells the user."""

from __future__ import annotations

import pytest

from mfrec.train.errors import ConfigError, DataValidationError
from mfrec.train.ingest import ImportOptions, load_interactions

HEADER = "user_id,item_id,timestamp"


def good_lines(n: int = 1_100, users: int = 50) -> list[str]:
    """``n`` valid rows (enough for Personalize's minimum) after a header."""
    return [HEADER] + [f"u{k % users},i{k % 97},{1600000000 + k}" for k in range(n)]


def write(path, lines: list[str]):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_missing_path(tmp_path):
    with pytest.raises(DataValidationError, match="does not exist.*channel name and S3 prefix"):
        load_interactions(tmp_path / "nope")


def test_empty_folder_lists_likely_causes(tmp_path):
    with pytest.raises(
        DataValidationError,
        match=r"no data file in .*found: nothing at all.*"
        r"wrong channel name or S3 prefix.*hidden or marker",
    ):
        load_interactions(tmp_path)


def test_folder_with_hidden_and_marker_files_only(tmp_path):
    write(tmp_path / ".part-0.csv", good_lines())
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / "README.md").write_text("data")
    with pytest.raises(
        DataValidationError,
        match=r"found: \.part-0\.csv \(hidden\); README\.md "
        r"\(not a data file\); _SUCCESS \(marker file\)",
    ):
        load_interactions(tmp_path)


def test_only_empty_files(tmp_path):
    (tmp_path / "a.csv").write_text("\n\n")
    with pytest.raises(DataValidationError, match="every file under .* is empty"):
        load_interactions(tmp_path)


def test_no_recognisable_columns_lists_found_and_accepted_names(tmp_path):
    write(tmp_path / "d.csv", ["cust,prod,when", "1,2,3", "4,5,6"])
    with pytest.raises(
        DataValidationError,
        match=r"no recognisable user or item column among the columns found \('cust', 'prod', "
        r"'when'\)\. Accepted names .*user: user_id, USER_ID, userId.*item: item_id.*--user-column",
    ):
        load_interactions(tmp_path / "d.csv")


def test_explicit_column_not_in_file(tmp_path):
    write(tmp_path / "d.csv", good_lines())
    with pytest.raises(
        DataValidationError,
        match="the user column 'customer' given in the options"
        " is not in the file; its columns are: user_id, item_id, timestamp",
    ):
        load_interactions(tmp_path / "d.csv", ImportOptions(user_column="customer"))


def test_headerless_file_with_too_many_columns(tmp_path):
    write(tmp_path / "d.csv", ["1,2,3,4,5", "6,7,8,9,10"])
    with pytest.raises(
        DataValidationError, match="no header and 5 columns.*--user-column column_1"
    ):
        load_interactions(tmp_path / "d.csv")


def test_single_column_file(tmp_path):
    write(tmp_path / "d.csv", ["user_id", "1", "2"])
    with pytest.raises(
        DataValidationError, match="cannot find a delimiter: the lines have a single"
    ):
        load_interactions(tmp_path / "d.csv")


def test_unparseable_rows_give_line_numbers_and_excerpts(tmp_path):
    lines = good_lines()
    lines[3] = "u1,i1"  # physical line 4
    lines.insert(6, "")  # a blank line shifts the following physical lines
    lines[9] = "u1,i1,1600000000,extra"  # physical line 10
    write(tmp_path / "d.csv", lines)
    with pytest.raises(
        DataValidationError,
        match=r"d\.csv: 2 row\(s\) cannot be parsed: line 4: 'u1,i1' has 2 fields, not 3; line 10:"
        r" 'u1,i1,1600000000,extra' has 4 fields, not 3\. .*--on-bad-rows skip",
    ):
        load_interactions(tmp_path / "d.csv")


def test_unparseable_rows_skipped_and_counted(tmp_path):
    lines = good_lines() + ["u1,i1", "u2"]
    write(tmp_path / "d.csv", lines)
    data, report = load_interactions(tmp_path / "d.csv", ImportOptions(on_bad_rows="skip"))
    assert len(data) == 1_100
    assert report.dropped == {"unparseable rows skipped": 2}
    assert report.rows_read == 1_102
    assert any(
        "skipped 2 unparseable row(s), e.g. line 1102: 'u1,i1'" in w for w in report.warnings
    )


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        (",i1,1600000000", r"1 with an empty or null user id\): line 3: user ''"),
        ("NULL,i1,1600000000", r"1 with an empty or null user id\): line 3: user 'NULL'"),
        ("u1, ,1600000000", r"1 with an empty or null item id\): line 3: item ' '"),
        (
            "u1,i1,yesterday",
            r"1 with a missing or non-numeric timestamp\): line 3: timestamp "
            r"'yesterday'",
        ),
        ("u1,i1,", r"1 with a missing timestamp\): line 3: timestamp None"),
    ],
)
def test_bad_values_are_refused_with_lines(tmp_path, bad_line, message):
    lines = good_lines()
    lines[2] = bad_line
    write(tmp_path / "d.csv", lines)
    with pytest.raises(
        DataValidationError, match=r"d\.csv: 1 row\(s\) have bad values \(" + message
    ):
        load_interactions(tmp_path / "d.csv")
    data, report = load_interactions(tmp_path / "d.csv", ImportOptions(on_bad_rows="skip"))
    assert len(data) == 1_099
    assert sum(report.dropped.values()) == 1


def test_numeric_timestamp_column_with_an_int_type_and_a_null(tmp_path):
    lines = good_lines()
    lines[5] = "u1,i1,"
    write(tmp_path / "d.csv", lines)  # pyarrow reads the column as int64 with one null
    with pytest.raises(DataValidationError, match=r"missing.*timestamp\): line 6: timestamp None"):
        load_interactions(tmp_path / "d.csv")


def test_non_numeric_event_values(tmp_path):
    lines = ["user_id,item_id,rating"] + [f"u{k % 50},i{k},{k % 5}" for k in range(1_100)]
    lines[40] = "u1,i1,five"
    write(tmp_path / "d.csv", lines)
    with pytest.raises(
        DataValidationError, match=r"non-numeric event value\): line 41: value 'five'"
    ):
        load_interactions(tmp_path / "d.csv")


def test_broken_json_lines(tmp_path):
    lines = [f'{{"user_id": "u{k % 50}", "item_id": "i{k}"}}' for k in range(1_100)]
    lines[7] = '{"user_id": "u1", item_id: 3}'
    write(tmp_path / "d.jsonl", lines)
    with pytest.raises(
        DataValidationError,
        match=r"1 row\(s\) cannot be parsed: line 8: .* is not"
        r" a JSON object",
    ):
        load_interactions(tmp_path / "d.jsonl")
    data, _ = load_interactions(tmp_path / "d.jsonl", ImportOptions(on_bad_rows="skip"))
    assert len(data) == 1_099


def test_corrupt_parquet_and_gzip(tmp_path):
    (tmp_path / "d.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataValidationError, match=r"d\.parquet: cannot be read as parquet"):
        load_interactions(tmp_path / "d.parquet")
    (tmp_path / "d.csv.gz").write_bytes(b"\x1f\x8b\x08\x00 truncated")
    with pytest.raises(
        DataValidationError, match="looks gzip-compressed but cannot be decompressed"
    ):
        load_interactions(tmp_path / "d.csv.gz")


def test_files_with_different_columns(tmp_path):
    write(tmp_path / "a.csv", good_lines())
    write(tmp_path / "b.csv", ["user_id,item_id", "u1,i1"])
    with pytest.raises(
        DataValidationError,
        match=r"do not all have the same kinds of columns "
        r"\(a\.csv: user_id, item_id, timestamp; b\.csv: user_id, item_id\)",
    ):
        load_interactions(tmp_path)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ImportOptions(min_event_value=3),
            "min_event_value needs an event_value column.*--value-column",
        ),
        (
            ImportOptions(event_types=("click",)),
            "event_types/event_type_weights needs an event_type column.*--event-type-column",
        ),
    ],
)
def test_options_that_need_a_missing_column(tmp_path, options, message):
    write(tmp_path / "d.csv", good_lines())
    with pytest.raises(ConfigError, match=message):
        load_interactions(tmp_path / "d.csv", options)


def test_everything_filtered_out(tmp_path):
    lines = ["user_id,item_id,rating"] + [f"u{k % 50},i{k},1" for k in range(1_100)]
    write(tmp_path / "d.csv", lines)
    with pytest.raises(
        DataValidationError,
        match=r"no interactions are left after filtering "
        r"\(read 1,100 rows; dropped 1,100 event value below 4\)",
    ):
        load_interactions(tmp_path / "d.csv", ImportOptions(min_event_value=4))


def test_json_array_is_not_json_lines(tmp_path):
    (tmp_path / "d.json").write_text('[{"user_id": "u1", "item_id": "i1"}]')
    with pytest.raises(DataValidationError, match="holds a JSON array; mfrec reads JSON lines"):
        load_interactions(tmp_path / "d.json")
