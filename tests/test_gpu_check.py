"""scripts/gpu-check, the prepared GPU measurements: it parses, and (slow) runs end to end on
the CPU at tiny sizes with --allow-cpu, leaving every step's result under $OUT."""

from __future__ import annotations

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
    env = {**os.environ, "OUT": str(tmp_path), "GPU_CHECK_SECONDS": "900"}
    done = subprocess.run(
        [str(SCRIPT), "--allow-cpu"], env=env, capture_output=True, text=True, timeout=1200
    )
    summary = (tmp_path / "summary.txt").read_text()
    assert done.returncode == 0, summary + done.stderr[-2000:]
    for step in ("bench-20k", "phases", "agreement", "serve-request"):
        assert f"{step}: exit 0" in summary, summary
    assert "2 workers logged a device" in summary
    agreement = json.loads((tmp_path / "agreement.json").read_text())
    assert agreement["max_abs_score_difference"] == 0.0  # CPU against CPU
    assert list(tmp_path.glob("gpu-*.json"))
