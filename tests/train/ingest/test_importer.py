"""Interaction import: every accepted format, header spelling, seed format and option."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from mfrec.train.errors import ConfigError
from mfrec.train.ingest import ImportOptions, interactions_to_table, load_interactions
from mfrec.train.ingest.synth import generate


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """1,200 synthetic interactions (60 users, 120 items): above Personalize's minimum."""
    return generate(1_200, num_users=60, num_items=120, seed=1)


def rows_of(data) -> list[tuple[str, str, int]]:
    users, items = data.user_ids[data.user_idx], data.item_ids[data.item_idx]
    return list(zip(users.tolist(), items.tolist(), data.timestamps.tolist(), strict=True))


def expected_rows(frame: pd.DataFrame) -> list[tuple[str, str, int]]:
    return list(
        zip(
            frame.user_id.astype(str).tolist(),
            frame.item_id.astype(str).tolist(),
            frame.timestamp.astype(int).tolist(),
            strict=True,
        )
    )


def write_text(path, lines: list[str], encoding: str = "utf-8") -> None:
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))


@pytest.mark.parametrize(
    ("names", "sep"),
    [
        (("user_id", "item_id", "timestamp"), ","),
        (("USER_ID", "ITEM_ID", "TIMESTAMP"), ","),
        (("userId", "movieId", "ts"), "\t"),
        (("userID", "artistID", "timestamp"), "\t"),
        (("user", "item", "time"), ";"),
        (("User ID", "Item ID", "Timestamp"), "|"),
    ],
)
def test_header_spellings_and_delimiters(tmp_path, frame, names, sep):
    path = tmp_path / "data.txt"
    frame.set_axis(list(names), axis=1).to_csv(path, sep=sep, index=False)
    data, report = load_interactions(path)
    assert rows_of(data) == expected_rows(frame)
    assert report.files[0]["roles"] == dict(zip(("user", "item", "timestamp"), names, strict=True))


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet", ".jsonl", ".jsonl.gz"])
def test_file_formats_give_the_same_interactions(tmp_path, frame, suffix):
    path = tmp_path / f"interactions{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
    elif suffix.startswith(".jsonl"):
        frame.to_json(path, orient="records", lines=True, compression="infer")
    else:
        frame.to_csv(path, index=False)
    data, _ = load_interactions(path)
    assert rows_of(data) == expected_rows(frame)


def test_gzip_is_detected_by_content_not_name(tmp_path, frame):
    path = tmp_path / "part-00000"
    path.write_bytes(gzip.compress(frame.to_csv(index=False).encode()))
    data, report = load_interactions(path)
    assert len(data) == len(frame)
    assert "gzip" in report.files[0]["format"]


def test_folder_is_read_recursively_in_sorted_order(tmp_path, frame):
    (tmp_path / "a" / "x").mkdir(parents=True)
    frame.iloc[:500].to_csv(tmp_path / "a" / "part1.csv", index=False)
    frame.iloc[500:900].to_parquet(tmp_path / "a" / "x" / "part2.parquet")
    frame.iloc[900:].to_csv(tmp_path / "c.csv.gz", index=False)
    (tmp_path / ".hidden.csv").write_text("garbage")
    (tmp_path / "_SUCCESS").write_text("")
    data, report = load_interactions(tmp_path)
    assert rows_of(data) == expected_rows(frame)
    names = ["a/part1.csv", "a/x/part2.parquet", "c.csv.gz"]
    assert [f["name"] for f in report.files] == names
    assert data.meta["source_files"] == names
    assert report.skipped_files == [".hidden.csv (hidden)", "_SUCCESS (marker file)"]


def test_headerless_u_data(tmp_path):
    """MovieLens u.data: user item rating timestamp, tab-separated, no header."""
    rng = np.random.default_rng(0)
    lines = [
        f"{u}\t{i}\t{r}\t{t}"
        for u, i, r, t in zip(
            rng.integers(1, 40, 1500),
            rng.integers(1, 200, 1500),
            rng.integers(1, 6, 1500),
            rng.integers(874_724_710, 893_286_638, 1500),
            strict=True,
        )
    ]
    write_text(tmp_path / "u.data", lines)
    data, report = load_interactions(tmp_path / "u.data")
    assert len(data) == 1500
    first = lines[0].split("\t")
    assert (data.user_ids[data.user_idx[0]], data.item_ids[data.item_idx[0]]) == tuple(first[:2])
    assert data.weights[0] == float(first[2]) and data.timestamps[0] == int(first[3])
    assert report.files[0]["interpretation"].startswith("headerless rule: 4 columns")
    assert report.timestamps_unit == "s"


def test_ratings_dat_with_double_colon(tmp_path):
    lines = [
        f"{u}::{(u * 7 + k) % 300 + 1}::{k % 5 + 1}::{978300760 + k}"
        for u in range(1, 41)
        for k in range(30)
    ]
    write_text(tmp_path / "ratings.dat", lines)
    options = ImportOptions(min_event_value=4)
    data, report = load_interactions(tmp_path / "ratings.dat", options, check_minimums=False)
    assert "'::'-separated" in report.files[0]["format"]
    assert len(data) == sum(1 for line in lines if int(line.split("::")[2]) >= 4)
    assert data.weights.min() >= 4
    assert report.dropped == {"event value below 4": 1200 - len(data)}


def test_lastfm_tags_with_millisecond_timestamps(tmp_path):
    """Last.FM user_taggedartists-timestamps.dat: userID artistID tagID timestamp (ms)."""
    lines = ["userID\tartistID\ttagID\ttimestamp"]
    lines += [
        f"{2 + u}\t{52 + (u * 13 + k) % 400}\t{k % 50}\t{1238536800000 + 1000 * k}"
        for u in range(40)
        for k in range(30)
    ]
    write_text(tmp_path / "user_taggedartists-timestamps.dat", lines)
    data, report = load_interactions(tmp_path)
    assert report.timestamps_unit == "ms"
    assert data.timestamps.min() == 1238536800  # converted to seconds
    assert data.weights is None  # tagID is not a value column: ignored
    assert report.files[0]["ignored_columns"] == ["tagID"]
    assert data.meta["timestamps_unit"] == "ms"


def test_lastfm_user_artists_weights(tmp_path):
    lines = ["userID\tartistID\tweight"]
    lines += [
        f"{2 + u}\t{51 + (u + k) % 300}\t{(u + 1) * (k + 1)}" for u in range(40) for k in range(30)
    ]
    write_text(tmp_path / "user_artists.dat", lines)
    data, report = load_interactions(tmp_path / "user_artists.dat")
    assert data.timestamps is None
    assert data.weights[:3].tolist() == [1.0, 2.0, 3.0]
    assert any("no timestamp column" in w for w in report.warnings)


def test_personalize_csv_with_types_values_and_weights(tmp_path):
    rows = ["USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,EVENT_VALUE"]
    for u in range(40):
        for k in range(30):
            kind = ("click", "purchase", "view")[k % 3]
            rows.append(f"u{u},i{(u + k) % 150},{1600000000 + k},{kind},{k % 4}")
    write_text(tmp_path / "interactions.csv", rows)
    options = ImportOptions.from_hyperparameters(
        {"event_types": "click,purchase", "event_type_weights": "click:1,purchase:5"}
    )
    data, report = load_interactions(tmp_path / "interactions.csv", options, check_minimums=False)
    assert len(data) == 800
    assert set(data.event_types.tolist()) == {"click", "purchase"}
    purchase = data.event_types == "purchase"
    assert np.all(data.weights[purchase] % 5 == 0)  # value x 5
    assert report.event_types == {"click": 400, "purchase": 400}
    assert report.dropped == {"event type not kept": 400}


def test_opaque_ids_keep_leading_zeros_and_any_text(tmp_path):
    rows = ["user_id,item_id"]
    ids = ["007", "7", "user_000061", "3f2b8c1e-1d1a-4b9e-9a51-0c7d2a7f5e10", "+7", "0x7"]
    rows += [f"{u},{i}" for u in ids for i in ids]
    write_text(tmp_path / "ids.csv", rows)
    data, _ = load_interactions(tmp_path / "ids.csv", check_minimums=False)
    assert data.user_ids.tolist() == ids  # order of first appearance, nothing merged
    assert data.item_ids.tolist() == ids


def test_numeric_ids_map_in_order_of_first_appearance(tmp_path):
    write_text(tmp_path / "d.csv", ["user,item", "10,5", "2,5", "10,3", "-4,0"])
    data, _ = load_interactions(tmp_path / "d.csv", check_minimums=False)
    assert data.user_ids.tolist() == ["10", "2", "-4"]
    assert data.user_idx.tolist() == [0, 1, 0, 2]
    assert data.item_ids.tolist() == ["5", "3", "0"]


def test_iso_timestamps_with_and_without_offsets(tmp_path):
    write_text(
        tmp_path / "d.csv",
        [
            "user_id,item_id,timestamp",
            "a,x,2020-01-01T00:00:00Z",
            "a,y,2020-01-01 01:00:00",
            "b,x,2020-01-01T02:00:00+02:00",
            "b,y,2020-01-02",
        ],
    )
    data, report = load_interactions(tmp_path / "d.csv", check_minimums=False)
    assert data.timestamps.tolist() == [1577836800, 1577840400, 1577836800, 1577923200]
    assert report.timestamps_unit == "iso8601"


@pytest.mark.parametrize(
    ("third", "role"), [("4", "value"), ("1600000000", "timestamp"), ("2021-05-01", "timestamp")]
)
def test_headerless_three_columns_decided_by_values(tmp_path, third, role):
    write_text(tmp_path / "d.tsv", [f"u{k}\ti{k}\t{third}" for k in range(10)])
    data, report = load_interactions(tmp_path / "d.tsv", check_minimums=False)
    assert report.files[0]["roles"]["user"] == "column_1"
    assert report.files[0]["roles"][role] == "column_3"
    assert f"3 columns = user, item, {role}" in report.files[0]["interpretation"]


def test_headerless_two_columns_and_forced_header_no(tmp_path):
    write_text(tmp_path / "pairs.csv", ["user_id,item_id", "1,2", "3,4"])
    data, _ = load_interactions(
        tmp_path / "pairs.csv", ImportOptions(header="no"), check_minimums=False
    )
    assert data.user_ids.tolist() == ["user_id", "1", "3"]


def test_explicit_columns_win_over_detection(tmp_path):
    write_text(tmp_path / "d.csv", ["user_id,customer,item_id,rating", "a,c1,x,5", "b,c2,y,3"])
    options = ImportOptions(user_column="customer", value_column="rating")
    data, report = load_interactions(tmp_path / "d.csv", options, check_minimums=False)
    assert data.user_ids.tolist() == ["c1", "c2"]
    assert report.files[0]["ignored_columns"] == ["user_id"]


def test_explicit_columns_for_wide_headerless_file(tmp_path):
    write_text(tmp_path / "wide.csv", ["x,u1,9,i1,1600000000", "y,u2,9,i2,1600000001"])
    options = ImportOptions.from_hyperparameters(
        {"user_column": "column_2", "item_column": "column_4", "timestamp_column": "column_5"}
    )
    data, _ = load_interactions(tmp_path / "wide.csv", options, check_minimums=False)
    assert data.item_ids.tolist() == ["i1", "i2"]
    assert data.timestamps.tolist() == [1600000000, 1600000001]


def test_latin1_file_is_read_and_reported(tmp_path, frame):
    lines = ["user_id,item_id,timestamp"] + [
        f"usér{u},{i},{t}" for u, i, t in frame.itertuples(index=False)
    ]
    write_text(tmp_path / "latin.csv", lines, encoding="latin-1")
    data, report = load_interactions(tmp_path / "latin.csv")
    assert data.user_ids[0].startswith("usér")
    assert any("not valid UTF-8" in w and "latin-1" in w for w in report.warnings)


def test_latin1_after_the_sniffed_sample(tmp_path, frame):
    big = pd.concat([frame] * 60, ignore_index=True)
    text = big.to_csv(index=False).encode() + "café,1,1600000000\n".encode("latin-1")
    (tmp_path / "late.csv").write_bytes(text)
    data, report = load_interactions(tmp_path / "late.csv")
    assert "café" in data.user_ids.tolist()
    assert report.files[0]["encoding"] == "latin-1"


def test_utf8_bom_and_utf16(tmp_path, frame):
    text = frame.to_csv(index=False)
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    (tmp_path / "u16.csv").write_bytes(text.encode("utf-16"))
    for name in ("bom.csv", "u16.csv"):
        data, _ = load_interactions(tmp_path / name)
        assert rows_of(data) == expected_rows(frame)


def test_jsonl_with_mixed_id_types(tmp_path):
    records = [
        {"user_id": 1 if k % 2 else "u1", "item_id": k, "ts": 1600000000 + k} for k in range(6)
    ]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    data, _ = load_interactions(tmp_path / "d.jsonl", check_minimums=False)
    assert data.user_ids.tolist() == ["u1", "1"]
    assert data.timestamps.tolist() == [1600000000 + k for k in range(6)]


@pytest.mark.parametrize(
    ("policy", "pairs", "weights", "timestamps"),
    [
        ("keep", [("a", "x"), ("a", "y"), ("a", "x"), ("b", "x")], [1, 2, 4, 8], [30, 20, 10, 5]),
        ("first", [("a", "y"), ("a", "x"), ("b", "x")], [2, 4, 8], [20, 10, 5]),
        ("sum", [("a", "x"), ("a", "y"), ("b", "x")], [5, 2, 8], [30, 20, 5]),
    ],
)
def test_duplicate_policies(tmp_path, policy, pairs, weights, timestamps):
    write_text(
        tmp_path / "d.csv",
        ["user_id,item_id,event_value,timestamp", "a,x,1,30", "a,y,2,20", "a,x,4,10", "b,x,8,5"],
    )
    data, report = load_interactions(
        tmp_path / "d.csv", ImportOptions(duplicates=policy), check_minimums=False
    )
    found = list(zip(data.user_ids[data.user_idx], data.item_ids[data.item_idx], strict=True))
    assert found == pairs
    assert data.weights.tolist() == weights
    assert data.timestamps.tolist() == timestamps
    assert report.duplicates == {"rows": 1, "policy": policy}


def test_normalised_table_round_trips(tmp_path, frame):
    import pyarrow.parquet as pq

    data, _ = load_interactions(_write(frame, tmp_path / "d.csv"))
    pq.write_table(interactions_to_table(data), tmp_path / "n.parquet")
    again, _ = load_interactions(tmp_path / "n.parquet")
    assert rows_of(again) == rows_of(data)
    assert again.weights is None and again.event_types is None


def _write(frame, path):
    frame.to_csv(path, index=False)
    return path


def test_options_from_hyperparameters():
    options = ImportOptions.from_hyperparameters(
        {
            "min_event_value": "3.5",
            "event_types": '["click", "buy"]',
            "event_type_weights": '{"click": "1", "buy": 5}',
            "duplicates": "SUM",
            "header": "False",
            "user_column": "",
            "learning_rate": "0.1",  # not ours: left for the training config
        }
    )
    assert options.min_event_value == 3.5
    assert options.event_types == ("click", "buy")
    assert options.type_weights == {"click": 1.0, "buy": 5.0}
    assert (options.duplicates, options.header, options.user_column) == ("sum", "no", None)
    assert "min_event_value" in ImportOptions.hyperparameter_names()
    assert ImportOptions.from_hyperparameters(options.to_dict()) == options


@pytest.mark.parametrize(
    ("hyperparameters", "message"),
    [
        ({"duplicates": "drop"}, "duplicates='drop' is not valid; use one of keep, first, sum"),
        ({"on_bad_rows": "ignore"}, "use one of error, skip"),
        ({"min_event_value": "high"}, "min_event_value='high' is not a number"),
        ({"event_type_weights": "click=1"}, "write it as 'click:1,purchase:5'"),
    ],
)
def test_bad_options_are_config_errors(hyperparameters, message):
    with pytest.raises(ConfigError, match=message):
        ImportOptions.from_hyperparameters(hyperparameters)


@pytest.mark.ml100k
def test_ml100k_u_data(ml100k_dir):
    data, report = load_interactions(ml100k_dir / "u.data")
    assert (data.num_users, data.num_items, len(data)) == (943, 1682, 100_000)
    assert report.warnings == []


def test_quoted_fields_and_crlf_line_endings(tmp_path, frame):
    import csv

    frame.to_csv(tmp_path / "q.csv", index=False, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    data, _ = load_interactions(tmp_path / "q.csv")
    assert rows_of(data) == expected_rows(frame)


def test_space_separated_headerless(tmp_path, frame):
    frame.to_csv(tmp_path / "s.txt", index=False, sep=" ", header=False)
    data, report = load_interactions(tmp_path / "s.txt")
    assert rows_of(data) == expected_rows(frame)
    assert "space-separated, no header" in report.files[0]["format"]


def test_parquet_datetime_column(tmp_path, frame):
    frame.assign(timestamp=pd.to_datetime(frame.timestamp, unit="s")).to_parquet(tmp_path / "d.pq")
    data, report = load_interactions(tmp_path / "d.pq")
    assert rows_of(data) == expected_rows(frame)
    assert report.timestamps_unit == "datetime"


def test_folder_mixing_parquet_large_strings_and_csv(tmp_path, frame):
    import pyarrow as pa
    import pyarrow.parquet as pq

    head = frame.iloc[:600].astype({"user_id": str, "item_id": str})
    schema = pa.schema(
        [("user_id", pa.large_string()), ("item_id", pa.large_string()), ("timestamp", pa.int64())]
    )
    pq.write_table(pa.Table.from_pandas(head, schema, preserve_index=False), tmp_path / "a.parquet")
    frame.iloc[600:].to_csv(tmp_path / "b.csv", index=False)
    data, _ = load_interactions(tmp_path)
    assert rows_of(data) == expected_rows(frame)
