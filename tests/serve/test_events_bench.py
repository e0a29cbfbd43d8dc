"""Smoke test of benchmarks/events.py: tiny model, tiny budgets, structure only, nothing timed."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_events_benchmark_writes_its_tables(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))
    events = importlib.import_module("benchmarks.events")
    args = ["--parts", "store,ingest", "--users", "300", "--items", "200", "--seeded-users", "20"]
    args += ["--seconds", "0.3", "--clients", "2", "--workers", "1", "--reads", "20"]
    assert events.main([*args, "--redis", "no", "--out-dir", str(tmp_path)]) == 0
    (result,) = tmp_path.glob("events-*.json")
    payload = json.loads(result.read_text())
    assert payload["command"].startswith("python -m benchmarks.events")
    ingest = payload["results"]["ingest"]["SQLite"]
    assert ingest["calls"] > 0 and ingest["errors"] == 0
    assert payload["results"]["store"]["SQLite"]["p50_ms"] > 0
    assert (tmp_path / result.name.replace(".json", ".md")).is_file()
    sys.modules.pop("benchmarks.events", None)
