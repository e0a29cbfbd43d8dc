"""Finding a dataset's files and sniffing each one: format, compression, delimiter, header."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mfrec.train.errors import DataValidationError
from mfrec.train.ingest.formats import SourceFile, list_input_files, sniff


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


# --- list_input_files -------------------------------------------------------------------------


def test_a_folder_is_listed_recursively_in_path_order_with_each_skip_reason(tmp_path):
    for name in ("b.csv", "a/c/d.parquet", "a/b.tsv", "x/.cache/e.csv", "notes.MD", "README"):
        write(tmp_path / name, "user_id,item_id\n1,2\n")
    write(tmp_path / "part-0.csv.crc", "checksum")
    write(tmp_path / "_SUCCESS", "")
    write(tmp_path / "empty.csv", "")
    files, skipped = list_input_files(tmp_path)
    assert [f.relative_to(tmp_path).as_posix() for f in files] == [
        "a/b.tsv",
        "a/c/d.parquet",
        "b.csv",
    ]
    assert skipped == [
        "README (not a data file)",
        "_SUCCESS (marker file)",
        "empty.csv (empty)",
        "notes.MD (not a data file)",
        "part-0.csv.crc (not a data file)",
        "x/.cache/e.csv (hidden)",
    ]


def test_a_pipe_in_a_folder_is_skipped_with_the_input_modes_that_work(tmp_path):
    write(tmp_path / "data.csv", "user_id,item_id\n1,2\n")
    os.mkfifo(tmp_path / "training_0")
    files, skipped = list_input_files(tmp_path)
    assert files == [tmp_path / "data.csv"]
    assert skipped == ["training_0 (pipe (use TrainingInputMode File or FastFile))"]


def test_a_single_file_is_taken_as_given(tmp_path):
    path = write(tmp_path / ".notes.md", "user_id,item_id\n1,2\n")
    assert list_input_files(path) == ([path], [])
    assert list_input_files(str(path)) == ([path], [])


def test_a_folder_without_data_names_what_it_found(tmp_path):
    write(tmp_path / "_SUCCESS", "")
    write(tmp_path / "empty.csv", "")
    with pytest.raises(
        DataValidationError,
        match=r"no data file in .* \(found: _SUCCESS \(marker file\); empty\.csv \(empty\)\)\. "
        r"Likely causes: .*Accepted: CSV/TSV/\.dat text, their \.gz, Parquet, JSON lines\.",
    ):
        list_input_files(tmp_path)


def test_a_missing_path_points_at_the_channel(tmp_path):
    with pytest.raises(
        DataValidationError, match=r"nope does not exist\. .*copies channel 'training'"
    ):
        list_input_files(tmp_path / "nope")


# --- sniff: format and compression ------------------------------------------------------------


def test_parquet_is_recognised_by_its_magic_bytes_whatever_the_name(tmp_path):
    path = tmp_path / "part-00000"
    pq.write_table(pa.table({"user_id": [1], "item_id": [2], "rating": [5.0]}), path)
    source = sniff(path)
    assert (source.kind, source.compression) == ("parquet", None)
    assert source.column_names == ("user_id", "item_id", "rating")
    assert source.describe() == "parquet"


def test_json_lines_keys_come_from_the_first_object_and_gzip_from_the_content(tmp_path):
    text = '{"user_id": "u1", "item_id": "i1"}\n{"user_id": "u2", "item_id": "i2", "x": 1}\n'
    path = write(tmp_path / "events.txt", gzip.compress(text.encode()))
    source = sniff(path)
    assert (source.kind, source.compression) == ("jsonl", "gzip")
    assert source.column_names == ("user_id", "item_id")
    assert source.describe() == "jsonl, gzip"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]\n", "holds a JSON array; mfrec reads JSON lines"),
        ('{"user_id": 1\n', r"the first line is not a JSON object \(Expecting"),
        (b"\x1f\x8b\x08\x00cut", "looks gzip-compressed but cannot be decompressed"),
        (b"PAR1 not really", r"cannot be read as parquet \("),
        ("user_id\n1\n2\n", r"cannot find a delimiter: .*\(first line: 'user_id'\)"),
    ],
)
def test_unreadable_files_say_what_is_wrong(tmp_path, content, message):
    with pytest.raises(DataValidationError, match=message):
        sniff(write(tmp_path / "d.csv", content))


def test_a_blank_file_sniffs_as_none(tmp_path):
    assert sniff(write(tmp_path / "d.csv", "  \n\n")) is None
    assert sniff(write(tmp_path / "d.csv.gz", gzip.compress(b"\n"))) is None


# --- sniff: delimited text --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "delimiter", "names"),
    [
        ("1::10::5::978300760\n2::20::3::978300761\n", "::", 4),
        ("user\titem\n1\t10\n", "\t", ("user", "item")),
        ("user,item\n1,10\n", ",", ("user", "item")),
        ("user;item;rating\n1;10;3,5\n2;20;4,0\n", ";", ("user", "item", "rating")),
        ("user|item\n1|10\n", "|", ("user", "item")),
        ("1 10 5\n2 20 3\n", " ", 3),
        # a space inside a field does not beat the comma, which comes first
        ("user_id,title\n1,The Matrix\n2,Alien 3\n", ",", ("user_id", "title")),
    ],
)
def test_delimiter_is_the_first_that_splits_the_lines_evenly(tmp_path, text, delimiter, names):
    source = sniff(write(tmp_path / "d.txt", text))
    assert source.delimiter == delimiter
    if isinstance(names, int):  # headerless: positional names
        names = tuple(f"column_{i + 1}" for i in range(names))
    assert source.column_names == names


def test_describe_names_the_delimiter_header_and_encoding(tmp_path):
    source = sniff(write(tmp_path / "d.tsv.gz", gzip.compress(b"user_id\titem_id\n1\t2\n")))
    assert source.describe() == "delimited text, gzip, tab-separated, header, utf-8"
    source = sniff(write(tmp_path / "d.dat", "1::2\n3::4\n"))
    assert source.describe() == "delimited text, '::'-separated, no header, utf-8"


@pytest.mark.parametrize(
    ("text", "has_header"),
    [
        ("USER_ID,Item ID\nu1,i1\n", True),  # a known column name
        ("c1,p1,qty\nu1,i1,3\nu2,i2,4\n", True),  # numbers below a non-number
        ("buyer,thing\nalice,matrix\nbob,alien\n", True),  # words never seen again
        ("u1,i1,3\nu2,i2,4\n", False),
        ("1,10\n2,20\n", False),
        ("alice,matrix\nalice,alien\n", False),  # 'alice' appears again: data, not a name
        ("alice,matrix\n", False),  # one line: nothing to compare it with
    ],
)
def test_header_rule(tmp_path, text, has_header):
    source = sniff(write(tmp_path / "d.csv", text))
    assert source.has_header is has_header
    first = tuple(text.splitlines()[0].split(","))
    assert (source.column_names == first) is has_header
    assert (source.sample_rows[0] == first) is not has_header


@pytest.mark.parametrize(
    ("header", "names", "first_row"),
    [
        ("yes", ("u1", "i1"), ("u2", "i2")),
        ("no", ("column_1", "column_2"), ("u1", "i1")),
    ],
)
def test_header_option_overrides_the_rule(tmp_path, header, names, first_row):
    path = write(tmp_path / "d.csv", "u1,i1\nu2,i2\n")
    source = sniff(path, header=header)
    assert source.column_names == names and source.sample_rows[0] == first_row


def test_header_no_keeps_a_header_line_as_data(tmp_path):
    source = sniff(write(tmp_path / "d.csv", "user_id,item_id\n1,2\n"), header="no")
    assert source.column_names == ("column_1", "column_2")
    assert source.sample_rows == (("user_id", "item_id"), ("1", "2"))


def test_quoted_fields_are_split_like_csv(tmp_path):
    source = sniff(write(tmp_path / "d.csv", 'item_id,title\n1,"Three, the film"\n'))
    assert source.column_names == ("item_id", "title")
    assert source.sample_rows == (("1", "Three, the film"),)


@pytest.mark.parametrize(
    ("content", "encoding"),
    [
        (b"\xef\xbb\xbfuser_id,item_id\n1,2\n", "utf-8"),  # the BOM is not part of the name
        ("user_id,item_id\n1,2\n".encode("utf-16"), "utf-16"),
        ("user_id,item_id\nJosé,2\n".encode("latin-1"), "latin-1"),
        ("user_id,item_id\nJosé,2\n".encode(), "utf-8"),
    ],
)
def test_encoding(tmp_path, content, encoding):
    source = sniff(write(tmp_path / "d.csv", content))
    assert source.encoding == encoding
    assert source.column_names == ("user_id", "item_id")


def test_describe_of_an_unlisted_delimiter_shows_it_quoted(tmp_path):
    source = SourceFile(tmp_path / "d.txt", "csv", delimiter="#", has_header=False)
    assert source.describe() == "delimited text, '#'-separated, no header, utf-8"


def test_headerless_column_count_is_the_most_common_over_all_rows(tmp_path):
    source = sniff(write(tmp_path / "d.csv", "1,2,3\n4,5\n6,7,8\n"))
    assert source.column_names == ("column_1", "column_2", "column_3")
