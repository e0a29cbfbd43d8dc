"""The data report: known-answer figures, JSON, summary, and Amazon Personalize's minimums."""

from __future__ import annotations

import json

import pytest

from mfrec.train.errors import DataValidationError
from mfrec.train.ingest import load_interactions


def write(path, lines: list[str]):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def dataset(tmp_path, users: int, per_user: int, items: int, singles: int = 0):
    """``users`` users with ``per_user`` interactions each, plus ``singles`` one-off users."""
    lines = ["user_id,item_id,timestamp"]
    lines += [
        f"u{u},i{(u * per_user + k) % items},{1600000000 + k}"
        for u in range(users)
        for k in range(per_user)
    ]
    lines += [f"s{s},i0,1600000000" for s in range(singles)]
    return write(tmp_path / "d.csv", lines)


def test_known_answer_report(tmp_path):
    path = write(
        tmp_path / "d.csv",
        [
            "user_id,item_id,timestamp",
            "a,x,1600000000",
            "a,y,1600000060",
            "a,x,1600000120",
            "b,z,1600086400",
            "c,x,1600000000",
        ],
    )
    _, report = load_interactions(path, check_minimums=False)
    assert (report.num_interactions, report.num_users, report.num_items) == (5, 3, 3)
    assert report.interactions_per_user == {"min": 1, "median": 1.0, "mean": 1.667, "max": 3}
    assert report.interactions_per_item == {"min": 1, "median": 1.0, "mean": 1.667, "max": 3}
    assert report.density == pytest.approx(4 / 9)  # 4 distinct pairs of 3 x 3
    assert report.duplicates == {"rows": 1, "policy": "keep"}
    assert report.time_range == {
        "start": "2020-09-13T12:26:40Z",
        "end": "2020-09-14T12:26:40Z",
        "min": 1600000000,
        "max": 1600086400,
    }
    assert report.rows_read == 5 and report.dropped == {}
    assert report.minimums["interactions"] == {
        "value": 5,
        "required": 1000,
        "what": "interactions",
        "ok": False,
    }
    assert report.minimums["users_with_2_interactions"]["value"] == 1


def test_json_and_summary(tmp_path):
    _, report = load_interactions(dataset(tmp_path, users=60, per_user=30, items=150))
    report.write_json(tmp_path / "out" / "report.json")
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved == report.to_dict()
    assert saved["num_interactions"] == 1800 and saved["warnings"] == []
    summary = report.summary()
    assert "interactions: 1,800" in summary
    assert "users: 60 (interactions per user min 30 / median 30 / max 30)" in summary
    assert "Amazon Personalize minimums: met" in summary


def test_below_1000_interactions_is_refused(tmp_path):
    path = dataset(tmp_path, users=60, per_user=16, items=150)  # 960 interactions
    with pytest.raises(
        DataValidationError,
        match=r"too little data: 960 interactions, below "
        r"Amazon Personalize's minimum \(1,000; mfrec uses the same\)",
    ) as caught:
        load_interactions(path)
    assert caught.value.report.num_interactions == 960  # the report comes with the refusal


def test_too_few_users_with_two_interactions_is_refused(tmp_path):
    path = dataset(tmp_path, users=24, per_user=40, items=150, singles=100)
    with pytest.raises(
        DataValidationError,
        match=r"24 users with at least 2 interactions, below "
        r"Amazon Personalize's minimum \(25",
    ):
        load_interactions(path)


def test_refusal_becomes_a_warning_when_minimums_are_not_checked(tmp_path):
    path = dataset(tmp_path, users=60, per_user=16, items=150)
    data, report = load_interactions(path, check_minimums=False)
    assert len(data) == 960
    assert any(w.startswith("too little data: 960 interactions") for w in report.warnings)
    assert "Amazon Personalize minimums: NOT met" in report.summary()


def test_below_guidance_warns(tmp_path):
    _, report = load_interactions(dataset(tmp_path, users=40, per_user=30, items=80))
    assert report.warnings == [
        "only 40 users; Amazon Personalize recommends at least 50 for useful recommendations",
        "only 80 items; Amazon Personalize recommends at least 100 for useful recommendations",
    ]
    _, report = load_interactions(dataset(tmp_path, users=100, per_user=12, items=150))
    assert report.warnings == [
        "only 12 interactions per user (median); Amazon Personalize recommends at least 24 for "
        "useful recommendations"
    ]


def test_small_timestamps_warn(tmp_path):
    lines = ["user_id,item_id,timestamp"] + [f"u{k % 50},i{k % 120},{k}" for k in range(1_200)]
    _, report = load_interactions(write(tmp_path / "d.csv", lines))
    assert any("timestamps are small numbers (max 1199)" in w for w in report.warnings)
