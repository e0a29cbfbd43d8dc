"""SHA-256 of model files, optionally computed on a thread ahead of the load that checks them.

Checking a 1M-user model's 690 MB ``arrays.npz`` takes a second or more; the server's start-up
would otherwise spend it after its imports (torch alone takes seconds). :func:`start` hashes the
files on threads (``hashlib`` and file reads release the GIL, so the imports and the array checks
go on meanwhile), and :func:`sha256` then returns that result for the same, unchanged file (same
path, inode, size and modification time before and after), or hashes the file itself. The
digest is still compared with the manifest by :func:`mfrec.train.artifact.load`, every time: only
*when* it is computed changes. (As before, a file rewritten between its hashing and its mapping,
within one tick of the file system's clock and to the same size, would go unseen: the check is
against damaged or tampered folders, not against a writer racing the server's start-up.)
"""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import Future
from pathlib import Path

BLOCK = 16 << 20  # bytes read and hashed per holding of the GIL
_PENDING: dict[tuple, Future] = {}  # file key -> its digest, being computed
_LOCK = threading.Lock()


def _key(path: Path) -> tuple:
    stat = path.stat()
    return (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _hash(path: Path) -> str:
    """SHA-256 of the file, read in :data:`BLOCK`-byte pieces: reading and hashing release the
    GIL, so a thread hashing beside Python code that holds it (imports) waits for it a few
    dozen times, not once per megabyte."""
    digest = hashlib.sha256()
    buffer = bytearray(BLOCK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while size := handle.readinto(buffer):
            digest.update(view[:size])
    view.release()
    return digest.hexdigest()


def _fill(future: Future, path: Path) -> None:
    try:
        future.set_result(_hash(path))
    except OSError as exc:  # reported by the load that asks for it
        future.set_exception(exc)


def start(paths: list[str | os.PathLike]) -> None:
    """Hash ``paths`` on background threads (files that do not exist, or are being hashed
    already, are skipped)."""
    for path in map(Path, paths):
        try:
            key = _key(path)
        except OSError:
            continue  # the load reports a missing file
        future: Future = Future()
        with _LOCK:
            if key in _PENDING:
                continue
            _PENDING[key] = future
        threading.Thread(target=_fill, args=(future, path), name="sha256", daemon=True).start()


def sha256(path: str | os.PathLike) -> str:
    """The SHA-256 (hex) of ``path``: the one :func:`start` computed if the file has not changed
    since, else computed now."""
    path = Path(path)
    key = _key(path)
    with _LOCK:
        future = _PENDING.pop(key, None)
    if future is not None:
        digest = future.result()
        if _key(path) == key:
            return digest
    return _hash(path)
