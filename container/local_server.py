"""Start ``mfrec serve`` as a child process on a free loopback port and wait for its ``/ping``.

One implementation for everything that needs a real server on this machine: ``mfrec
transform`` (when given a model folder), the serving benchmark and the server tests.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from mfrec.train.errors import MfrecError


class ServerFailed(MfrecError):
    """The local model server exited, or did not answer ``/ping`` with 200 in time."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalServer:
    """``python -m mfrec serve`` on 127.0.0.1, stopped with SIGTERM when the ``with`` block ends.

    Parameters
    ----------
    model_dir : path, optional
        ``--model-dir``; without it the server reads ``$SAGEMAKER_BASE_DIR/model`` (pass it in
        ``env``), as in a SageMaker container.
    workers : int, optional
        ``--workers``; without it the server's own default (or ``env``'s setting).
    env : mapping, optional
        Variables added to this process's environment for the server.
    args : sequence of str
        More ``mfrec serve`` arguments.
    stdout, stderr : file or subprocess constant, optional
        Where the server's output goes (default: this process's).
    startup_timeout : float
        Seconds to wait for the first 200 on ``/ping``.

    Attributes
    ----------
    url, port, process
    pings : list of int
        The status of every ``/ping`` that got an answer while starting (the last is 200).
    startup_seconds : float
        From process start to the first 200.
    """

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        workers: int | None = None,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        stdout=None,
        stderr=None,
        startup_timeout: float = 300.0,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The port goes in SAGEMAKER_BIND_TO_PORT, as SageMaker passes it (--port in ``args``
        # would override it).
        command = [sys.executable, "-m", "mfrec", "serve", "--host", "127.0.0.1", *args]
        if model_dir is not None:
            command += ["--model-dir", str(model_dir)]
        if workers:
            command += ["--workers", str(workers)]
        started = time.perf_counter()
        self.process = subprocess.Popen(
            command,
            env={**os.environ, "SAGEMAKER_BIND_TO_PORT": str(self.port), **(env or {})},
            stdout=stdout,
            stderr=stderr,
        )
        try:
            self.pings = self._wait_for_ping(startup_timeout)
        except BaseException:
            self.stop(graceful=False)
            raise
        self.startup_seconds = time.perf_counter() - started

    def _wait_for_ping(self, timeout: float) -> list[int]:
        statuses, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerFailed(
                    f"the model server exited with code {self.process.returncode} before "
                    "answering /ping; its log says why"
                )
            try:
                statuses.append(self.get("/ping", timeout=2)[0])
                if statuses[-1] == 200:
                    return statuses
            except (OSError, http.client.HTTPException):
                pass  # not listening yet: the model loads before the port opens
            time.sleep(0.05)
        raise ServerFailed(f"the model server did not answer /ping within {timeout:.0f} s")

    def connection(self, timeout: float = 600) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def get(self, path: str, timeout: float = 30) -> tuple[int, bytes]:
        """One GET on a fresh connection: (status, body)."""
        connection = self.connection(timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def worker_pids(self) -> list[int]:
        """The pids of the server's worker processes (gunicorn's children)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []

    def stop(self, graceful: bool = True, timeout: float = 60) -> int:
        """SIGTERM (graceful: in-flight requests finish) or SIGKILL; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
