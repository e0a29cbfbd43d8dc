"""resolve_device: the spelling check, the CPU fallback and its log line, the kernel probe."""

from __future__ import annotations

import logging

import pytest
import torch

from mfrec.train import device as device_module
from mfrec.train.device import resolve_device
from mfrec.train.errors import ConfigError

CPU = torch.device("cpu")


def test_resolve_device(caplog, monkeypatch):
    with caplog.at_level(logging.INFO, logger="mfrec.train"):
        assert resolve_device("cpu") == CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.INFO, logger="mfrec.train"):
        assert resolve_device("auto") == CPU
    assert "device: cpu (device=auto; " in caplog.text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback without CUDA")
def test_requested_cuda_falls_back_to_cpu_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="mfrec.train"):
        assert resolve_device("cuda:0") == CPU
    assert "CUDA failed to start for device=cuda:0" in caplog.text


@pytest.mark.parametrize("spec", ["tpu", "cuda:", "CPU", "cuda0"])
def test_unknown_spelling_is_a_config_error(spec):
    with pytest.raises(ConfigError, match="use auto, cpu, cuda or cuda:N"):
        resolve_device(spec)


def test_probe_runs_a_kernel_and_reads_it_back():
    device_module._probe(CPU)  # raises when the result is wrong


def test_the_reason_names_the_cpu_build():
    if torch.version.cuda is None:
        assert "has no CUDA support" in device_module._why_no_cuda()
