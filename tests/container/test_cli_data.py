"""``mfrec validate``, ``mfrec import`` and ``mfrec synth`` run in-process through the real CLI."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from mfrec.cli import main


def write_csv(path, num_rows: int = 1_200, extra: list[str] = ()):
    lines = ["USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,EVENT_VALUE"]
    lines += [
        f"u{k % 60},i{k % 150},{1600000000000 + k},{('view', 'buy')[k % 2]},{k % 5}"
        for k in range(num_rows)
    ]
    path.write_text("\n".join(lines + list(extra)) + "\n")
    return path


def test_validate_prints_summary_and_writes_json(tmp_path, capsys):
    path = write_csv(tmp_path / "d.csv")
    assert main(["validate", str(path), "--report-json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "interactions: 1,200" in out and "(read as ms)" in out
    assert json.loads((tmp_path / "r.json").read_text())["num_users"] == 60


def test_validate_refusal_exits_1_and_still_writes_the_report(tmp_path, capsys):
    path = write_csv(tmp_path / "d.csv")
    code = main(
        ["validate", str(path), "--min-event-value", "4", "--report-json", str(tmp_path / "r.json")]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "mfrec validate: error: too little data: 240 interactions" in err
    assert "Traceback" not in err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["dropped"] == {"event value below 4": 960}
    assert main(["validate", str(path), "--min-event-value", "4", "--no-minimums"]) == 0


def test_validate_bad_rows_error_then_skip(tmp_path, capsys):
    path = write_csv(tmp_path / "d.csv", extra=["u1,i1"])
    assert main(["validate", str(path)]) == 1
    assert "1 row(s) cannot be parsed: line 1202: 'u1,i1' has 2 fields, not 5" in (
        capsys.readouterr().err
    )
    assert main(["validate", str(path), "--on-bad-rows", "skip"]) == 0
    assert "dropped: 1 unparseable rows skipped" in capsys.readouterr().out


def test_bad_option_value_exits_1(tmp_path, capsys):
    path = write_csv(tmp_path / "d.csv")
    assert main(["validate", str(path), "--duplicates", "drop"]) == 1
    assert "duplicates='drop' is not valid; use one of keep, first, sum" in capsys.readouterr().err


def test_import_writes_normalised_parquet(tmp_path, capsys):
    path = write_csv(tmp_path / "d.csv", num_rows=2_400)
    out = tmp_path / "out" / "n.parquet"
    code = main(
        [
            "import",
            str(path),
            "--out",
            str(out),
            "--event-types",
            "buy",
            "--event-type-weights",
            "buy:2",
        ]
    )
    assert code == 0
    table = pq.read_table(out)
    assert table.schema == pa.schema(
        [
            ("user_id", pa.string()),
            ("item_id", pa.string()),
            ("timestamp", pa.int64()),
            ("event_value", pa.float32()),
            ("event_type", pa.string()),
        ]
    )
    assert table.num_rows == 1_200
    assert table.slice(0, 1).to_pylist() == [
        {
            "user_id": "u1",
            "item_id": "i1",
            "timestamp": 1600000000,
            "event_value": 2.0,
            "event_type": "buy",
        }
    ]
    assert "wrote 1,200 interactions" in capsys.readouterr().out


def test_synth_csv_parquet_and_items(tmp_path, capsys):
    args = ["synth", "--num-interactions", "3000", "--num-users", "100", "--num-items", "200"]
    assert (
        main([*args, "--out", str(tmp_path / "s.csv"), "--items-out", str(tmp_path / "i.csv")]) == 0
    )
    assert main([*args, "--out", str(tmp_path / "s.parquet")]) == 0
    assert "wrote 3,000 interactions of 100 users and 200 items" in capsys.readouterr().out
    assert pq.read_table(tmp_path / "s.parquet").num_rows == 3000
    assert (tmp_path / "i.csv").read_text().startswith("item_id,title,genre\n")
    assert main(["validate", str(tmp_path / "s.csv")]) == 0


def test_synth_impossible_size_exits_1(tmp_path, capsys):
    code = main(
        ["synth", "--out", str(tmp_path / "s.csv"), "--num-interactions", "5", "--num-users", "10"]
    )
    assert code == 1
    assert "must be at least num_users" in capsys.readouterr().err


def test_an_out_of_range_timestamp_exits_1_with_one_line_not_2(tmp_path, capsys):
    """Issue 17: year-10000 timestamps were an internal error (exit 2) with a traceback."""
    lines = write_csv(tmp_path / "d.csv").read_text().splitlines()
    lines[3] = "u1,i2,253402300800000,view,1"
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    assert main(["validate", str(tmp_path / "d.csv")]) == 1
    err = capsys.readouterr().err
    assert "line 4: timestamp 253402300800" in err and "Traceback" not in err


def test_a_full_disk_is_a_user_error_naming_the_file(tmp_path, capsys, monkeypatch):
    """Issue 17's full-disk class at the CLI boundary: exit 1 with the path, not exit 2."""
    import errno
    import os

    out = tmp_path / "n.parquet"

    def full(table, where, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(where))

    monkeypatch.setattr(pq, "write_table", full)
    assert main(["import", str(write_csv(tmp_path / "d.csv")), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"mfrec import: error: no space left on device while writing {out}" in err
    assert "Traceback" not in err
