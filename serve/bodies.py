"""Request bodies read against a deadline, so that slow clients cannot hold the server's threads.

A gunicorn ``gthread`` worker gives each request a thread, which blocks while the client sends
the body. A client that trickles its body (a byte now and then) would hold that thread for as
long as it likes, and enough of them would leave no thread for ``/ping`` (issue 17, item 4).
:class:`BodyDeadline` is a WSGI middleware that reads a body before the app sees it and gives
the client ``grace_seconds`` plus one second per ``min_rate`` bytes received so far (a minimum
average rate, as Apache's ``mod_reqtimeout`` ``MinRate``): a client that falls behind gets
``408 Request Timeout`` with ``Connection: close``, and its thread is free again.

The deadline is enforced by one :class:`Watchdog` thread per worker, which shuts the read side
of late sockets (the blocked read then ends); a request costs a heap push, no thread of its own.
"""

from __future__ import annotations

import heapq
import io
import itertools
import socket
import threading
import time

GRACE_SECONDS = 10.0  # what any client gets, whatever its speed
MIN_RATE = 64 * 1024  # bytes per second a body must average beyond the grace
CHUNK = 64 * 1024


class Watchdog:
    """Shuts the read side of sockets whose deadline has passed (one thread, started on first
    use: after gunicorn's fork)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, socket.socket]] = []
        self._live: dict[int, float] = {}  # entry -> its current deadline
        self._counter = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket, deadline: float, entry: int | None = None) -> int:
        """Watch ``sock`` until ``deadline`` (``time.monotonic()``); returns the entry, which
        can be given again to move its deadline."""
        with self._changed:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="body-watchdog", daemon=True)
                self._thread.start()
            entry = next(self._counter) if entry is None else entry
            self._live[entry] = deadline
            heapq.heappush(self._heap, (deadline, entry, sock))
            if self._heap[0][1] == entry:  # the thread sleeps until the earliest deadline:
                self._changed.notify()  # woken only when that changes, not once per request
        return entry

    def cancel(self, entry: int) -> None:
        with self._changed:
            self._live.pop(entry, None)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._heap:
                    self._changed.wait()
                deadline, entry, sock = self._heap[0]
                if self._live.get(entry) != deadline:  # cancelled or moved
                    heapq.heappop(self._heap)
                    continue
                if (left := deadline - time.monotonic()) > 0:
                    self._changed.wait(left)
                    continue
                heapq.heappop(self._heap)
                del self._live[entry]
            try:
                sock.shutdown(socket.SHUT_RD)
            except OSError:  # closed meanwhile
                pass


class BodyTooSlow(Exception):
    """The client sent its body more slowly than the deadline allows."""


class BodyDeadline:
    """WSGI middleware: bodies of up to ``max_bytes`` (by ``Content-Length``) are read before
    the app runs, within ``grace_seconds + received / min_rate`` seconds; late ones get 408.

    Bodies with no length, or longer than ``max_bytes`` (the app answers 413), and requests
    that did not come through gunicorn (no ``gunicorn.socket``) pass through unchanged.
    """

    def __init__(
        self,
        app,
        max_bytes: int,
        grace_seconds: float = GRACE_SECONDS,
        min_rate: float = MIN_RATE,
        watchdog: Watchdog | None = None,
    ) -> None:
        self.app, self.max_bytes = app, max_bytes
        self.grace_seconds, self.min_rate = grace_seconds, min_rate
        self.watchdog = watchdog or Watchdog()

    def __call__(self, environ, start_response):
        sock = environ.get("gunicorn.socket")
        length = environ.get("CONTENT_LENGTH") or ""
        if sock is None or not length.isdigit() or not 0 < int(length) <= self.max_bytes:
            return self.app(environ, start_response)
        try:
            environ["wsgi.input"] = io.BytesIO(self.read(environ["wsgi.input"], sock, int(length)))
        except BodyTooSlow as exc:
            self.refuse(sock, f"{exc}; send the body faster or in smaller requests")
            start_response("408 Request Timeout", [("Content-Type", "text/plain")])
            return [b""]
        environ["CONTENT_LENGTH"] = length
        return self.app(environ, start_response)

    @staticmethod
    def refuse(sock: socket.socket, text: str) -> None:
        """Answer 408 on ``sock`` itself and shut it: gunicorn drops an app's ``Connection:
        close`` and would announce keep-alive on a connection whose body was not read; its own
        write then fails (EPIPE, logged at debug level) and it closes the connection."""
        body = text.encode("utf-8", "backslashreplace")
        head = (
            "HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        try:
            sock.sendall(head.encode() + body)
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # the client has gone
            pass

    def read(self, stream, sock: socket.socket, length: int) -> bytes:
        """``length`` bytes of ``stream``, or :class:`BodyTooSlow`."""
        started = time.monotonic()
        chunks, received = [], 0
        entry = None
        try:
            while received < length:
                deadline = started + self.grace_seconds + received / self.min_rate
                if time.monotonic() >= deadline:
                    break
                entry = self.watchdog.watch(sock, deadline, entry)
                try:
                    chunk = stream.read(min(CHUNK, length - received))
                except OSError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
                received += len(chunk)
        finally:
            if entry is not None:
                self.watchdog.cancel(entry)
        if received < length:
            raise BodyTooSlow(
                f"the body arrived too slowly ({received} of {length} bytes in "
                f"{time.monotonic() - started:.1f} s; at least {self.min_rate / 1024:.0f} kB/s "
                f"after the first {self.grace_seconds:g} s)"
            )
        return b"".join(chunks)
