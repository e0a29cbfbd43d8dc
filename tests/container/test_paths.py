"""SageMaker's folder layout, computed from the base folder when asked, never at import time."""

from __future__ import annotations

from pathlib import Path

import pytest

from mfrec import paths as paths_module
from mfrec.paths import DEFAULT_BASE_DIR, SageMakerPaths


def test_the_layout_under_a_base_folder(tmp_path):
    paths = SageMakerPaths(tmp_path)
    relative = {
        name: getattr(paths, name).relative_to(tmp_path).as_posix()
        for name in (
            "input_config",
            "hyperparameters",
            "input_data_config",
            "resource_config",
            "model",
            "output",
            "failure",
            "output_data",
            "checkpoints",
        )
    }
    assert relative == {
        "input_config": "input/config",
        "hyperparameters": "input/config/hyperparameters.json",
        "input_data_config": "input/config/inputdataconfig.json",
        "resource_config": "input/config/resourceconfig.json",
        "model": "model",
        "output": "output",
        "failure": "output/failure",
        "output_data": "output/data",
        "checkpoints": "checkpoints",
    }
    assert paths.channel("training") == tmp_path / "input" / "data" / "training"
    assert paths.channel("training_0") == tmp_path / "input" / "data" / "training_0"


def test_the_module_holds_no_path_computed_at_import_time():
    assert [name for name, value in vars(paths_module).items() if isinstance(value, Path)] == []


def test_nothing_is_created_on_disk(tmp_path):
    paths = SageMakerPaths.from_env(tmp_path / "base")
    assert paths.model == tmp_path / "base" / "model"
    assert not (tmp_path / "base").exists()


def test_default_base_is_opt_ml(monkeypatch):
    monkeypatch.delenv("SAGEMAKER_BASE_DIR", raising=False)
    assert DEFAULT_BASE_DIR == "/opt/ml"
    assert SageMakerPaths.from_env().base == Path("/opt/ml")
    assert SageMakerPaths.from_env().model == Path("/opt/ml/model")


def test_the_environment_is_read_at_call_time(tmp_path, monkeypatch):
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path / "first"))
    first = SageMakerPaths.from_env()
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path / "second"))
    assert first.base == tmp_path / "first"
    assert SageMakerPaths.from_env().hyperparameters == (
        tmp_path / "second" / "input" / "config" / "hyperparameters.json"
    )


@pytest.mark.parametrize("given", ["str", "path"])
def test_an_explicit_base_wins_over_the_environment(tmp_path, monkeypatch, given):
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path / "from-env"))
    base = tmp_path / "given"
    paths = SageMakerPaths.from_env(str(base) if given == "str" else base)
    assert paths.base == base and isinstance(paths.base, Path)


@pytest.mark.parametrize("empty", [None, ""])
def test_an_empty_base_or_variable_falls_back(tmp_path, monkeypatch, empty):
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", "")
    assert SageMakerPaths.from_env(empty).base == Path(DEFAULT_BASE_DIR)
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    assert SageMakerPaths.from_env(empty).base == tmp_path


def test_paths_are_frozen_values(tmp_path):
    assert SageMakerPaths(tmp_path) == SageMakerPaths.from_env(tmp_path)
    with pytest.raises(AttributeError, match="cannot assign to field 'base'"):
        SageMakerPaths(tmp_path).base = Path("/elsewhere")
