"""scripts/gpu-check, the prepared GPU measurements: it parses, and (slow) runs end to end on
the CPU at tiny sizes with --allow-cpu, leaving every step's result under $OUT (issue 13's steps,
then iALS iterations, the plain job against --processes 1 and 2, the sequence model)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu-check"


def test_the_script_parses_and_is_executable():
    assert os.access(SCRIPT, os.X_OK)
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.mark.slow
def test_the_script_runs_every_step_on_the_cpu(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "GPU_CHECK_SECONDS": "1500"}
    done = subprocess.run(
        [str(SCRIPT), "--allow-cpu"], env=env, capture_output=True, text=True, timeout=1800
    )
    summary = (tmp_path / "summary.txt").read_text()
    assert done.returncode == 0, summary + done.stderr[-2000:]
    steps = ("bench-20k", "phases", "agreement", "serve-request", "ials-iteration", "processes")
    for step in (*steps, "sequence"):
        assert f"{step}: exit 0" in summary, summary
    assert "2 workers logged a device" in summary
    agreement = json.loads((tmp_path / "agreement.json").read_text())
    assert agreement["max_abs_score_difference"] == 0.0  # CPU against CPU
    assert list(tmp_path.glob("gpu-*.json"))
    ials = json.loads((tmp_path / "ials_iteration.json").read_text())
    assert set(ials["factors"]) == {"16", "32"}
    assert all(len(found["iteration_seconds"]) == 2 for found in ials["factors"].values())
    # On the CPU: plain, --processes 1 and --processes 2 (gloo) for iALS and SGD, all agreeing.
    processes = json.loads((tmp_path / "processes.json").read_text())
    assert len(processes["verdicts"]) == 4
    assert all(verdict.endswith("-> AGREE") for verdict in processes["verdicts"]), summary
    assert summary.count("-> AGREE") == 4
    sequence = json.loads((tmp_path / "sequence.json").read_text())
    assert sequence["steps"] == 5 and sequence["sequences"] > 0


@pytest.fixture
def gpu_more(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))  # the benchmarks package
    return importlib.import_module("benchmarks.gpu_more")


def test_a_processes_verdict_agrees_differs_or_fails(gpu_more):
    _verdict, IALS_TOLERANCE = gpu_more._verdict, gpu_more.IALS_TOLERANCE
    plain = {"exit": 0, "seconds": 10.0, "valid_ndcg@10": 0.2}
    close = {"exit": 0, "seconds": 9.0, "max_abs_embedding_difference": IALS_TOLERANCE / 2}
    far = {**close, "max_abs_embedding_difference": IALS_TOLERANCE * 2}
    assert _verdict("ials", "processes-1", close, plain).endswith("-> AGREE")
    assert _verdict("ials", "processes-2", far, plain).endswith("-> DIFFER")
    assert _verdict("sgd", "processes-1", {**close, "valid_ndcg@10": 0.199}, plain).endswith(
        "-> AGREE"
    )
    assert _verdict("sgd", "processes-2", {**close, "valid_ndcg@10": 0.18}, plain).endswith(
        "-> DIFFER"
    )
    failed = _verdict("sgd", "processes-2", {"exit": "timeout", "seconds": 60.0}, plain)
    assert failed.startswith("processes sgd processes-2: exit timeout in 60.0 s")
    assert failed.endswith("-> FAILED (see processes.json)")
