"""An HTTP client of a model server's ``/invocations``, retrying like SageMaker's batch transform.

One keep-alive connection per thread; each answer's ``Server-Timing`` durations are summed, so
that ``mfrec transform`` can say where the time went.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from mfrec.train.errors import ConfigError, MfrecError

if TYPE_CHECKING:
    from mfrec.transform import TransformJob

logger = logging.getLogger(__name__)


class InvocationFailed(MfrecError):
    """A body kept failing after every retry (or the connection kept breaking)."""


class Client:
    """POSTs bodies to ``<endpoint>/invocations``; one keep-alive connection per thread."""

    def __init__(self, endpoint: str, job: TransformJob) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"endpoint {endpoint!r} is not an http(s) URL like http://127.0.0.1:8080"
            )
        self.parts, self.job = parts, job
        self.base = parts.path.rstrip("/")
        self._local = threading.local()
        self._opened: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self.server_seconds: dict[str, float] = {}
        self.request_seconds = 0.0

    def _connection(self) -> http.client.HTTPConnection:
        if getattr(self._local, "connection", None) is None:
            kind = (
                http.client.HTTPSConnection
                if self.parts.scheme == "https"
                else http.client.HTTPConnection
            )
            self._local.connection = kind(
                self.parts.hostname, self.parts.port, timeout=self.job.invocation_timeout
            )
            self._opened.append(self._local.connection)
        return self._local.connection

    def _add_timing(self, header: str | None) -> None:
        """Sum the server's ``Server-Timing`` durations (seconds) over all requests."""
        for part in (header or "").split(","):
            name, _, duration = part.strip().partition(";dur=")
            try:
                seconds = float(duration) / 1000
            except ValueError:
                continue
            with self._lock:
                self.server_seconds[name] = self.server_seconds.get(name, 0.0) + seconds

    def close(self) -> None:
        """Close every connection (a server draining on SIGTERM waits for open ones)."""
        for connection in self._opened:
            connection.close()

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, bytes]:
        connection = self._connection()
        try:
            connection.request(method, self.base + path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read()
            self._add_timing(response.getheader("Server-Timing"))
            return response.status, data
        except (OSError, http.client.HTTPException):
            connection.close()
            self._local.connection = None
            raise

    def execution_parameters(self) -> dict:
        try:
            status, data = self.request("GET", "/execution-parameters")
            return json.loads(data) if status == 200 else {}
        except (OSError, http.client.HTTPException, ValueError):
            return {}

    def invoke(self, body: bytes) -> bytes:
        """The answer to one body, retried like SageMaker; raises InvocationFailed at the end."""
        headers = {"Content-Type": self.job.content_type, "Accept": self.job.accept}
        for attempt in range(self.job.max_retries + 1):
            try:
                started = time.perf_counter()
                status, data = self.request("POST", "/invocations", body, headers)
                if 200 <= status < 300:
                    with self._lock:
                        self.request_seconds += time.perf_counter() - started
                    return data
                problem = f"HTTP {status}: {data[:300].decode('utf-8', 'replace')}"
            except (OSError, http.client.HTTPException) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            logger.warning(
                "invocation failed (attempt %d of %d): %s",
                attempt + 1,
                self.job.max_retries + 1,
                problem,
            )
            if attempt < self.job.max_retries:
                time.sleep(self.job.retry_delay * 2**attempt)
        raise InvocationFailed(problem)
