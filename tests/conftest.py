"""Shared fixtures. Tests import mfrec as installed (never the repository's folders directly)."""

from __future__ import annotations

from pathlib import Path

import pytest

ML100K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-100k"


def pytest_collection_modifyitems(config, items):
    import shutil
    import subprocess

    import torch

    skip_gpu = pytest.mark.skip(reason="no CUDA device")
    skip_ml = pytest.mark.skip(reason=f"{ML100K} not present")
    docker_ok = None
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "ml100k" in item.keywords and not (ML100K / "u.data").is_file():
            item.add_marker(skip_ml)
        if "docker" in item.keywords:
            if docker_ok is None:
                docker_ok = bool(shutil.which("docker")) and (
                    subprocess.run(["docker", "info"], capture_output=True).returncode == 0
                )
            if not docker_ok:
                item.add_marker(pytest.mark.skip(reason="no Docker engine (`docker info` failed)"))


@pytest.fixture
def ml100k_dir() -> Path:
    return ML100K


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread avoids OpenMP hand-offs that dominate on a shared CPU, and
    makes CPU training bit-for-bit reproducible. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
