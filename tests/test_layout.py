"""The dependency rule of docs/architecture.md: container -> serve -> train, read from the code.

Every ``import`` of every module is checked (module level and inside functions alike), so a
lazy import cannot hide a dependency that points the wrong way.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What each package may not import (prefixes of module names).
FORBIDDEN = {
    "train": ("mfrec.serve", "flask", "gunicorn", "boto3", "botocore", "mfrec.cli"),
    "serve": ("boto3", "botocore", "mfrec.cli", "mfrec.commands", "mfrec.sagemaker"),
}
# The one exception, with its reason: serve/auth.py checks SigV4 signatures with botocore's own
# signer, imported only when MFREC_AUTH_KEYS is set (docs/serving.md, "Signatures (SigV4)").
ALLOWED = {("serve/auth.py", "botocore")}
# The root package's own modules (container/), which train and serve never import.
CONTAINER_MODULES = tuple(
    f"mfrec.{path.stem if path.is_file() else path.name}"
    for path in (ROOT / "container").iterdir()
    if not path.name.startswith("_") and (path.suffix == ".py" or path.is_dir())
)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def violations(package: str) -> list[str]:
    forbidden = FORBIDDEN[package] + CONTAINER_MODULES
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in sorted(imported_modules(path)):
            wrong = [p for p in forbidden if name == p or name.startswith(p + ".")]
            if any((str(path.relative_to(ROOT)), prefix) not in ALLOWED for prefix in wrong):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


@pytest.mark.parametrize("package", ["train", "serve"])
def test_dependencies_point_one_way(package):
    assert violations(package) == []


def test_the_rule_catches_a_wrong_import(tmp_path, monkeypatch):
    bad = tmp_path / "train" / "bad.py"
    bad.parent.mkdir()
    bad.write_text("def f():\n    from mfrec.serve.app import create_app\n    import mfrec.cli\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert violations("train") == [
        "train/bad.py imports mfrec.cli",
        "train/bad.py imports mfrec.serve.app",
        "train/bad.py imports mfrec.serve.app.create_app",
    ]


def test_metric_regexes_and_request_builders_do_not_import_torch():
    code = (
        "import sys, mfrec.sagemaker, mfrec.train.metric_lines, mfrec.train.config, "
        "mfrec.train.ingest; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
