"""The process boundary of a training job: SIGTERM/SIGINT as a stop flag, errors as exit codes
and SageMaker's failure file.

Exit 0: done, or stopped by a signal; exit 1: the user's data or hyperparameters are wrong
(:class:`~mfrec.train.errors.MfrecError`), the failure file says what and how to fix it; exit 2:
a bug in mfrec, the traceback goes to the log and a short line to the failure file.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from mfrec.train.errors import MfrecError

logger = logging.getLogger(__name__)

FAILURE_LINE_LIMIT = 1000  # SageMaker keeps the first 1024 characters as FailureReason


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
    """The process boundary: run ``job``, turn errors into an exit code and a failure file."""
    if failure_file is not None:
        failure_file.unlink(missing_ok=True)  # a leftover from an earlier local run
    with stop_on_signals() as stop:
        try:
            return job(stop)
        except MfrecError as exc:
            reason = f"{type(exc).__name__}: {exc}"
            logger.error("training failed: %s", reason)
            write_failure(failure_file, reason)
            return 1
        except Exception as exc:  # the process boundary: log the traceback, exit 2
            logger.exception("internal error in the training job; please report it")
            write_failure(
                failure_file,
                f"Internal error in mfrec ({type(exc).__name__}: {exc}). This is a bug, not a "
                "problem with your data: the traceback is in the job's log; please report it.",
            )
            return 2


def write_failure(path: Path | None, reason: str) -> None:
    """Write ``reason`` as one first line under the limit, the full text after it if cut."""
    if path is None:
        return
    line = " ".join(reason.split())
    text = line if len(line) <= FAILURE_LINE_LIMIT else line[: FAILURE_LINE_LIMIT - 3] + "..."
    if text != line:
        text += "\n\n" + reason
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    except OSError as exc:
        logger.error("cannot write the failure file %s: %s", path, exc)
