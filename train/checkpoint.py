"""Training checkpoints: tensors, numbers and strings only, written atomically, loaded without
pickle (``torch.load(weights_only=True)``).

A checkpoint carries a *fingerprint* of the data, the configuration and the device type; one
that does not match the current run is ignored (with a log line) rather than resumed, since
resuming it would silently train a different model.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

import numpy as np
import torch

from mfrec.train.config import TrainConfig
from mfrec.train.errors import write_through_partial
from mfrec.train.interactions import Interactions

logger = logging.getLogger(__name__)

CHECKPOINT_VERSION = 2  # 2: RowAdam optimizer state
_NAME = re.compile(r"^checkpoint-(\d{8})\.pt$")
KEEP = 2


def fingerprint(
    data: Interactions, valid: Interactions | None, config: TrainConfig, device: torch.device
) -> dict:
    """What a checkpoint must match to be resumed: data digest, config (less the device
    spelling), device type."""
    digest = hashlib.blake2b(digest_size=16)
    for interactions in (data, valid):
        if interactions is None:
            digest.update(b"none")
            continue
        digest.update(np.asarray([interactions.num_users, interactions.num_items]).tobytes())
        digest.update(np.ascontiguousarray(interactions.user_idx, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(interactions.item_idx, dtype=np.int64).tobytes())
    settings = config.to_dict()
    settings.pop("device")
    return {
        "version": CHECKPOINT_VERSION,
        "data": digest.hexdigest(),
        "num_users": data.num_users,
        "num_items": data.num_items,
        "num_interactions": len(data),
        "config": settings,
        "device_type": device.type,
    }


def _existing(checkpoint_dir: Path) -> list[tuple[int, Path]]:
    if not checkpoint_dir.is_dir():
        return []
    found = []
    for path in checkpoint_dir.iterdir():
        match = _NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def save_checkpoint(checkpoint_dir: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` as the newest checkpoint (temporary file, then rename) and delete all
    but the newest :data:`KEEP`."""
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    existing = _existing(checkpoint_dir)
    number = existing[-1][0] + 1 if existing else 1
    path = checkpoint_dir / f"checkpoint-{number:08d}.pt"
    partial = checkpoint_dir / f".{path.name}.partial"

    def write(partial: Path) -> None:
        # A Python file object, not a path: torch's own writer turns a full disk into
        # "unexpected pos ...", while file.write raises OSError(ENOSPC).
        with open(partial, "wb") as handle:
            torch.save(state, handle)

    write_through_partial(path, partial, write)
    for _, old in existing[: max(0, len(existing) + 1 - KEEP)]:
        old.unlink(missing_ok=True)
    return path


def load_latest(checkpoint_dir: str | os.PathLike | None, expected: dict) -> dict | None:
    """The newest readable checkpoint in ``checkpoint_dir`` whose fingerprint equals ``expected``.

    Checkpoints are tried newest first; one that cannot be read (a write cut short, bytes
    altered, a pickle with a global that ``weights_only`` refuses) or that was written for other
    data, another configuration or another device type is skipped with a log line saying why,
    so a damaged newest file falls back to the one before it. Returns None when none fits.
    Leftover ``.partial`` files (a write cut short by a kill) are removed first.
    """
    if checkpoint_dir is None:
        return None
    for leftover in Path(checkpoint_dir).glob(".checkpoint-*.pt.partial"):
        logger.info("removing %s, a checkpoint write that was cut short", leftover)
        leftover.unlink(missing_ok=True)
    existing = _existing(Path(checkpoint_dir))
    for _, path in reversed(existing):
        state = _read(path)
        if state is None:
            continue
        found = state.get("fingerprint")
        if found == expected:
            logger.info("resuming from checkpoint %s", path)
            return state
        found = found if isinstance(found, dict) else {}
        differs = sorted(key for key in expected if found.get(key) != expected[key])
        logger.warning(
            "ignoring checkpoint %s: written for a different %s",
            path,
            ", ".join(differs) or "format",
        )
    if existing:
        logger.warning("no checkpoint in %s fits this job: training starts afresh", checkpoint_dir)
    return None


def _read(path: Path) -> dict | None:
    """A checkpoint's state, or None (logged) when it cannot be read."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- damaged bytes raise many types inside torch.load
        logger.warning("ignoring checkpoint %s: it cannot be read (%s)", path, exc)
        return None
    if not isinstance(state, dict):
        logger.warning("ignoring checkpoint %s: it holds no training state", path)
        return None
    return state
