"""The process boundary of a training job: SIGTERM/SIGINT as a stop flag, errors as exit codes
and SageMaker's failure file.

Exit 0: done, or stopped by a signal; exit 1: the user's data or hyperparameters are wrong
(:class:`~mfrec.train.errors.MfrecError`), or a disk is full, and the failure file says what and
how to fix it; exit 2: a bug in mfrec, the traceback goes to the log and a short line to the
failure file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from mfrec.train.errors import MfrecError, disk_full

logger = logging.getLogger(__name__)

FAILURE_LINE_LIMIT = 1000  # SageMaker keeps the first 1024 characters as FailureReason
RESERVE_NAME = ".mfrec-failure-reserve"
RESERVE_BYTES = 16 * 1024  # room for the failure file, freed when it is written


class StopFlag:
    """Set by SIGTERM (or a first Ctrl-C); passed to the training loop as ``should_stop``."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def __call__(self) -> bool:
        return self.signal_name is not None

    def set(self, signum: int, frame=None) -> None:
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name
            logger.warning("%s received: stopping after the current step", self.signal_name)
        if signum == signal.SIGINT:  # a second Ctrl-C stops at once
            signal.signal(signal.SIGINT, signal.default_int_handler)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    """Install SIGTERM/SIGINT handlers for the duration of a job, then restore the old ones."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signal handlers can only be installed from the main thread
        return
    previous = {sig: signal.signal(sig, flag.set) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_guarded(job: Callable[[StopFlag], int], failure_file: Path | None) -> int:
    """The process boundary: run ``job``, turn errors into an exit code and a failure file.

    A disk that fills up (ENOSPC, EDQUOT) anywhere in the job is the user's to fix: exit 1 with
    :class:`~mfrec.train.errors.DiskFullError`. A small reserve file beside the failure file is
    released before the failure file is written, so that even a full output disk gets its reason.
    """
    if failure_file is not None:
        failure_file.unlink(missing_ok=True)  # a leftover from an earlier local run
    reserve = _reserve(failure_file)
    try:
        with stop_on_signals() as stop:
            return _run(job, stop, failure_file, reserve)
    finally:
        if reserve is not None:
            reserve.unlink(missing_ok=True)


def _run(job, stop: StopFlag, failure_file: Path | None, reserve: Path | None) -> int:
    try:
        return job(stop)
    except (MfrecError, OSError) as exc:
        if isinstance(exc, OSError):
            if (full := disk_full(exc, exc.filename or "a file")) is None:
                return _internal_error(exc, failure_file, reserve)
            exc = full
        reason = f"{type(exc).__name__}: {exc}"
        logger.error("training failed: %s", reason)
        write_failure(failure_file, reason, reserve)
        return 1
    except Exception as exc:  # the process boundary: log the traceback, exit 2
        return _internal_error(exc, failure_file, reserve)


def _internal_error(exc: BaseException, failure_file: Path | None, reserve: Path | None) -> int:
    logger.exception("internal error in the training job; please report it", exc_info=exc)
    write_failure(
        failure_file,
        f"Internal error in mfrec ({type(exc).__name__}: {exc}). This is a bug, not a "
        "problem with your data: the traceback is in the job's log; please report it.",
        reserve,
    )
    return 2


def _reserve(failure_file: Path | None) -> Path | None:
    """A hidden file of :data:`RESERVE_BYTES` beside ``failure_file``; None when it cannot be
    written (the disk is already full: the failure file may then be lost, never left empty)."""
    if failure_file is None:
        return None
    reserve = failure_file.with_name(RESERVE_NAME)
    try:
        failure_file.parent.mkdir(parents=True, exist_ok=True)
        with open(reserve, "wb") as handle:
            handle.write(b"\0" * RESERVE_BYTES)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        logger.warning("cannot reserve room for the failure file in %s: %s", reserve.parent, exc)
        reserve.unlink(missing_ok=True)
        return None
    return reserve


def write_failure(path: Path | None, reason: str, reserve: Path | None = None) -> None:
    """Write ``reason`` as one first line under the limit, the full text after it if cut.

    ``reserve`` (see :func:`run_guarded`) is deleted first to make room. A write that fails
    leaves no failure file rather than an empty or cut one.
    """
    if path is None:
        return
    if reserve is not None:
        reserve.unlink(missing_ok=True)
    line = " ".join(reason.split())
    text = line if len(line) <= FAILURE_LINE_LIMIT else line[: FAILURE_LINE_LIMIT - 3] + "..."
    if text != line:
        text += "\n\n" + reason
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_text(path, text + "\n")
    except OSError as exc:
        logger.error("cannot write the failure file %s: %s", path, exc)
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
