"""The image's install without Docker: build the mfrec wheel from the files the Dockerfile copies,
install it into a fresh virtual environment, and run `mfrec train` then `mfrec serve` from there
against a temporary /opt/ml, from a folder outside the repository.

This catches what only an installed wheel shows: a package or package-data file missing from
pyproject, a dependency used but not declared, a path computed from the source tree.

To stay fast and offline, the fresh environment gets its dependencies as links to the installed
copies in this environment, chosen exactly as pip would choose them: the transitive closure of the
wheel's own ``Requires-Dist`` (no extras). Nothing else from this environment is visible there,
in particular not its editable mfrec nor the dev tools.
"""

from __future__ import annotations

import email.parser
import gzip
import importlib.metadata
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "container", "train", "serve")  # the Dockerfile's COPYs
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def build_wheel(dest: Path) -> Path:
    """``pip wheel --no-deps`` of a copy of the sources the Dockerfile copies (offline)."""
    src = dest / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=IGNORE)
        else:
            shutil.copy2(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run(
        [*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dest)]
        + [str(src)],
        check=True,
        capture_output=True,
    )
    (wheel,) = dest.glob("mfrec-*.whl")
    return wheel


def wheel_requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(archive.read(name).decode())
    return [Requirement(text) for text in metadata.get_all("Requires-Dist") or []]


def dependency_closure(
    requirements: list[Requirement],
) -> dict[str, importlib.metadata.Distribution]:
    """The installed distributions pip would install for ``requirements`` (markers, no extras)."""
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = list(requirements)
    while todo:
        requirement = todo.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        key = canonicalize_name(requirement.name)
        if key in found:
            continue
        try:
            found[key] = importlib.metadata.distribution(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"dependency {requirement} is not installed here; run scripts/setup")
        todo.extend(Requirement(text) for text in found[key].requires or [])
    return found


def fresh_venv(tmp: Path, wheel: Path) -> Path:
    """A new venv with the wheel installed (no deps) and its dependencies linked in."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", str(python)]
        + ["install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(
        subprocess.run(
            [python, "-c", code], check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    for dist in dependency_closure(wheel_requirements(wheel)).values():
        for top in {Path(str(f)).parts[0] for f in dist.files or []}:
            origin = Path(dist.locate_file(top))
            if top in ("..", "__pycache__") or not origin.exists() or (site / top).exists():
                continue
            (site / top).symlink_to(origin)
    return venv


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    return fresh_venv(tmp, build_wheel(tmp))


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    base = tmp_path / "ml"
    keep = ("HOME", "LANG", "LC_ALL", "TMPDIR")
    environ = {k: os.environ[k] for k in keep if k in os.environ}
    return {
        **environ,
        "PATH": "/usr/bin:/bin",
        "SAGEMAKER_BASE_DIR": str(base),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }


def test_wheel_carries_packages_and_data(installed, tmp_path):
    python = installed / "bin" / "python"
    code = (
        "import mfrec, mfrec.train, mfrec.serve, mfrec.sagemaker, mfrec.commands;"
        "from mfrec.train.ingest.datasets import default_dataset_path as p;"
        "print(mfrec.__file__); print(p()); print(p().is_file())"
    )
    out = subprocess.run([python, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    package_file, data_file, exists = out.stdout.split()
    assert Path(package_file).is_relative_to(installed)  # not the repository's editable install
    assert Path(data_file).is_relative_to(installed)
    assert exists == "True"
    # Only declared dependencies are visible: not this environment's dev tools.
    hidden = subprocess.run([python, "-c", "import pytest"], cwd=tmp_path, capture_output=True)
    assert b"No module named 'pytest'" in hidden.stderr


def test_installed_mfrec_trains_then_serves(installed, env, tmp_path):
    mfrec = str(installed / "bin" / "mfrec")
    python = str(installed / "bin" / "python")
    base = Path(env["SAGEMAKER_BASE_DIR"])
    (base / "input" / "config").mkdir(parents=True)
    # Small settings: this checks the install, not the model
    # (tests/container/test_training_job.py does).
    hyperparameters = {"num_epochs": "1", "embedding_dim": "16", "num_negatives": "64"}
    hyperparameters["refit"] = "false"
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    channel = base / "input" / "data" / "training"
    channel.mkdir(parents=True)
    code = "from mfrec.train.ingest.datasets import default_dataset_path as p; print(p())"
    dataset = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    with gzip.open(dataset.stdout.strip(), "rt") as embedded:  # the installed package data
        head = list(itertools.islice(embedded, 15_001))  # the header and 300 users
    (channel / "interactions.csv").write_text("".join(head))

    train = subprocess.run(
        [mfrec, "train"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert train.returncode == 0, train.stderr[-3000:]
    assert (base / "model" / "model.json").is_file()
    assert not (base / "output" / "failure").exists()
    # The ready-made MetricDefinitions match what the installed trainer prints.
    definitions = subprocess.run(
        [mfrec, "train", "--print-metric-definitions"], env=env, capture_output=True, text=True
    )
    output = train.stdout + train.stderr
    names = {d["Name"] for d in json.loads(definitions.stdout) if re.search(d["Regex"], output)}
    assert "validation:ndcg@10" in names

    port = _free_port()
    server = subprocess.Popen(
        [mfrec, "serve", "--port", str(port), "--workers", "1"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while _get(f"{url}/ping") != 200:
            assert server.poll() is None, server.stdout.read()
            assert time.monotonic() < deadline, "mfrec serve never answered /ping with 200"
            time.sleep(0.2)
        body = json.dumps({"user_id": "1", "top_n": "3"}).encode()
        headers = {"Content-Type": "application/json", "Accept": "text/csv"}
        request = urllib.request.Request(f"{url}/invocations", data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as answer:
            rows = answer.read().decode().split("\n")
        assert len(rows) == 3
        assert [row.split(",")[0] for row in rows] == ["1", "1", "1"]
        scores = [float(row.split(",")[2]) for row in rows]
        assert scores == sorted(scores, reverse=True)
        for page in ("/", "/web/static/web.js", "/web/static/web.css"):  # package data
            assert _get(url + page) == 200, page
    finally:
        server.send_signal(signal.SIGTERM)
        log = server.communicate(timeout=30)[0]
    assert server.returncode == 0, log[-3000:]
