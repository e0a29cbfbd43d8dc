"""The device choice, made once per process: training and serving both call
:func:`resolve_device`, so they fall back to the CPU alike."""

from __future__ import annotations

import logging

import torch

from mfrec.train.config import DEVICE_PATTERN
from mfrec.train.errors import ConfigError

logger = logging.getLogger(__name__)


def resolve_device(spec: str | torch.device) -> torch.device:
    """The device for ``spec`` ("auto", "cpu", "cuda", "cuda:N"), falling back to the CPU.

    "auto" picks CUDA when :func:`torch.cuda.is_available`. When CUDA is requested but cannot
    start (no GPU, a driver too old for this PyTorch build), training runs on the CPU and a
    warning says why: the same image serves CPU and GPU instances. Training and serving both
    call it, so they fall back alike.

    Raises
    ------
    ConfigError
        ``spec`` is not one of those spellings.
    """
    spec = str(spec)
    if not DEVICE_PATTERN.match(spec):
        raise ConfigError(f"device {spec!r} is not known; use auto, cpu, cuda or cuda:N")
    if spec == "cpu":
        logger.info("device: cpu (device=cpu)")
        return torch.device("cpu")
    if spec == "auto" and not torch.cuda.is_available():
        logger.info("device: cpu (device=auto; %s)", _why_no_cuda())
        return torch.device("cpu")
    device = torch.device("cuda" if spec == "auto" else spec)
    try:
        _probe(device)
    except (RuntimeError, AssertionError) as exc:  # torch raises AssertionError on CPU builds
        logger.warning(
            "device: cpu (CUDA failed to start for device=%s: %s; %s)", spec, exc, _why_no_cuda()
        )
        return torch.device("cpu")
    logger.info("device: %s (%s; device=%s)", device, torch.cuda.get_device_name(device), spec)
    return device


def _probe(device: torch.device) -> None:
    """Run a real kernel on ``device`` and read its result back: allocating a tensor alone
    succeeds on some setups where kernels then fail (no kernel image for this GPU)."""
    result = (torch.arange(8, device=device, dtype=torch.float32) * 2).sum()
    if float(result.cpu()) != 56.0:
        raise RuntimeError(f"a test kernel returned {float(result)} instead of 56")


def _why_no_cuda() -> str:
    """One phrase saying why CUDA is not usable here, for the device log line."""
    if torch.version.cuda is None:
        return f"this PyTorch build ({torch.__version__}) has no CUDA support"
    if torch.cuda.device_count() == 0:
        return "no NVIDIA GPU is visible (check the instance type and CUDA_VISIBLE_DEVICES)"
    return (
        f"PyTorch {torch.__version__} needs an NVIDIA driver for CUDA {torch.version.cuda} or "
        "newer; check `nvidia-smi` on the host"
    )
