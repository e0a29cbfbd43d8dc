"""SageMaker's folder layout, computed from a base folder at call time (never at import time).

The base is ``/opt/ml`` unless ``SAGEMAKER_BASE_DIR`` is set (the variable AWS's toolkits use),
so tests and local runs point the same code at a temporary folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BASE_DIR = "/opt/ml"


@dataclass(frozen=True)
class SageMakerPaths:
    base: Path

    @classmethod
    def from_env(cls, base: str | os.PathLike | None = None) -> SageMakerPaths:
        """Paths under ``base``, else ``$SAGEMAKER_BASE_DIR``, else ``/opt/ml``."""
        return cls(Path(base or os.environ.get("SAGEMAKER_BASE_DIR") or DEFAULT_BASE_DIR))

    @property
    def input_config(self) -> Path:
        return self.base / "input" / "config"

    @property
    def hyperparameters(self) -> Path:
        return self.input_config / "hyperparameters.json"

    @property
    def input_data_config(self) -> Path:
        return self.input_config / "inputdataconfig.json"

    @property
    def resource_config(self) -> Path:
        return self.input_config / "resourceconfig.json"

    def channel(self, name: str) -> Path:
        """``input/data/<name>``: a folder (File, FastFile) or FIFOs ``<name>_N`` (Pipe)."""
        return self.base / "input" / "data" / name

    @property
    def model(self) -> Path:
        return self.base / "model"

    @property
    def output(self) -> Path:
        return self.base / "output"

    @property
    def failure(self) -> Path:
        return self.output / "failure"

    @property
    def output_data(self) -> Path:
        return self.output / "data"

    @property
    def checkpoints(self) -> Path:
        return self.base / "checkpoints"
