"""Smoke test of benchmarks/soak.py (issue 15, item 7): a 20-second soak of a tiny model through
the real server; structure and correctness only (0 errors, memory sampled), nothing timed."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def soak():
    sys.path.insert(0, str(REPO))
    try:
        yield importlib.import_module("benchmarks.soak")
    finally:
        sys.path.remove(str(REPO))
        sys.modules.pop("benchmarks.soak", None)


def test_a_20_second_soak_has_no_errors_and_samples_memory(soak, tmp_path):
    argv = ["--seconds", "20", "--warm-up", "5", "--sample-every", "1", "--clients", "4"]
    argv += ["--workers", "2", "--users", "2000", "--items", "1000", "--out-dir", str(tmp_path)]
    assert soak.main(argv) == 0
    (result,) = tmp_path.glob("soak-*.json")
    payload = json.loads(result.read_text())
    assert payload["command"].startswith("python -m benchmarks.soak")
    found = payload["results"]
    assert found["errors"] == 0, found["error_examples"]
    assert found["requests"] > 0
    assert {name for name, *_ in soak.MIX} == set(found["by_type"])
    # Every request type was sent at least once (weights >= 1 of ~20 over hundreds of requests).
    assert all(counts["requests"] > 0 for counts in found["by_type"].values())
    samples = found["samples"]
    assert len(samples) >= 5
    last = samples[-1]["processes"]
    assert "master" in last and sum(name.startswith("worker") for name in last) == 2
    assert all(p["rss"] > p["anon"] > 0 for p in last.values())
    assert found["rss_mib"]["growth"] == pytest.approx(
        (found["rss_mib"]["end"] - found["rss_mib"]["after_warm_up"])
        / found["rss_mib"]["after_warm_up"]
    )
    assert (tmp_path / result.name.replace(".json", ".md")).is_file()


def test_record_errors_counts_failed_records_in_every_answer_shape(soak):
    mfrec = {"predictions": [{"user_id": "a", "item_ids": []}, {"user_id": "b", "error": "x"}]}
    assert soak.record_errors(json.dumps(mfrec).encode()) == 1
    lines = [{"itemList": [], "recommendationId": "RID-1"}, {"error": "bad filter"}, {"error": "y"}]
    assert soak.record_errors("\n".join(json.dumps(obj) for obj in lines).encode()) == 2
    assert soak.record_errors(b'{"itemList": [{"itemId": "i", "score": 0.5}]}') == 0


def test_growth_is_measured_from_the_first_sample_after_warm_up(soak):
    samples = [{"t": t, "rss_total": value} for t, value in [(0, 50.0), (4, 100.0), (8, 103.0)]]
    assert soak.growth(samples, 3, "rss_total") == (100.0, 103.0, pytest.approx(0.03))
    assert soak.growth(samples, 99, "rss_total") == (103.0, 103.0, 0.0)  # none after: the last


def test_warm_up_must_end_before_the_soak(soak, capsys):
    with pytest.raises(SystemExit):
        soak.main(["--seconds", "10", "--warm-up", "10"])
    assert "--warm-up 10.0 must be at least 0 and below --seconds" in capsys.readouterr().err
