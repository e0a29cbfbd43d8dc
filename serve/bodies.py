"""Request bodies read against a deadline, so that slow clients cannot hold the server's threads.

A gunicorn ``gthread`` worker gives each request a thread, which blocks while the client sends
the body. A client that trickles its body (a byte now and then) would hold that thread for as
long as it likes, and enough of them would leave no thread for ``/ping`` (issue 17, item 4).
:class:`BodyDeadline` is a WSGI middleware that reads a body before the app sees it and gives
the client ``grace_seconds`` plus one second per ``min_rate`` bytes received so far (a minimum
average rate, as Apache's ``mod_reqtimeout`` ``MinRate``): a client that falls behind gets
``408 Request Timeout`` with ``Connection: close``, and its thread is free again. Chunked
bodies are read the same way, and bodies over the limit, which the app discards, too.
mfrec's gunicorn worker (:mod:`mfrec.serve.workers`) reads the head and the first 64 kB
before a thread takes the request, under the same rule.

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

from gunicorn.http.errors import ChunkMissingTerminator, InvalidChunkSize, ParseException

GRACE_SECONDS = 10.0  # what any client gets, whatever its speed
MIN_RATE = 64 * 1024  # bytes per second a body must average beyond the grace
CHUNK = 64 * 1024
# gunicorn's complaints about a chunked body (OSErrors before gunicorn 24, like a lost client)
MALFORMED = (ParseException, InvalidChunkSize, ChunkMissingTerminator)


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


class _Watched:
    """A body stream read under the deadline: ``grace_seconds`` plus one second per
    ``min_rate`` bytes received, from the first read. A read past the deadline gives b""
    and sets :attr:`late`."""

    def __init__(self, stream, sock: socket.socket, middleware: BodyDeadline) -> None:
        self.stream, self.sock, self.middleware = stream, sock, middleware
        self.started, self.received, self.late = time.monotonic(), 0, False

    def read(self, size: int = -1) -> bytes:
        middleware = self.middleware
        deadline = self.started + middleware.grace_seconds + self.received / middleware.min_rate
        if self.late or time.monotonic() >= deadline:
            self.late = True
            return b""
        entry = middleware.watchdog.watch(self.sock, deadline)
        try:
            chunk = self.stream.read(size)
        except MALFORMED:
            raise
        except OSError:  # shut by the watchdog (gunicorn's NoMoreData is an OSError too)
            chunk = b""
        finally:
            middleware.watchdog.cancel(entry)
        self.late = not chunk and time.monotonic() >= deadline
        self.received += len(chunk)
        return chunk

    def too_slow(self, length: int | None) -> str:
        of = f" of {length}" if length is not None else ""
        return (
            f"the body arrived too slowly ({self.received}{of} bytes in "
            f"{time.monotonic() - self.started:.1f} s; at least "
            f"{self.middleware.min_rate / 1024:.0f} kB/s after the first "
            f"{self.middleware.grace_seconds:g} s); send the body faster or in smaller requests"
        )


class _Discarded(_Watched):
    """A body the app discards unread (it answers 413), read under the deadline: a late
    client gets 408 on the socket, and the app's answer then finds the socket shut."""

    def read(self, size: int = -1) -> bytes:
        chunk = super().read(size)
        if self.late:
            BodyDeadline.refuse(self.sock, self.too_slow(None))
        return chunk


class BodyDeadline:
    """WSGI middleware: bodies of up to ``max_bytes`` (by ``Content-Length``, or chunked) are
    read before the app runs, within ``grace_seconds + received / min_rate`` seconds; late
    ones get 408, malformed chunked ones 400. A longer body (the app answers 413 and discards
    it) is read under the same deadline. Requests that did not come through gunicorn (no
    ``gunicorn.socket``) pass through unchanged.
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
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if sock is None or not (chunked or length.isdigit() and int(length) > 0):
            return self.app(environ, start_response)
        if not chunked and int(length) > self.max_bytes:
            environ["wsgi.input"] = _Discarded(environ["wsgi.input"], sock, self)
            return self.app(environ, start_response)
        try:
            body = self.read(
                _Watched(environ["wsgi.input"], sock, self), None if chunked else int(length)
            )
        except BodyTooSlow as exc:
            return self.answer(sock, start_response, "408 Request Timeout", str(exc))
        except MALFORMED as exc:  # gunicorn's chunked reader: bad sizes or terminators
            text = f"the chunked body is malformed ({exc}); send a Content-Length instead"
            return self.answer(sock, start_response, "400 Bad Request", text)
        # A body of known length now: the app checks it against MaxPayloadInMB (413) at once.
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
        return self.app(environ, start_response)

    @staticmethod
    def answer(sock: socket.socket, start_response, status: str, text: str) -> list[bytes]:
        """Answer ``status`` on the socket (:meth:`refuse`); gunicorn's own answer then fails."""
        BodyDeadline.refuse(sock, text, status)
        start_response(status, [("Content-Type", "text/plain")])
        return [b""]

    @staticmethod
    def refuse(sock: socket.socket, text: str, status: str = "408 Request Timeout") -> None:
        """Answer ``status`` on ``sock`` itself and shut it: gunicorn drops an app's
        ``Connection: close`` and would announce keep-alive on a connection whose body was not
        read; its own write then fails (EPIPE, logged at debug level) and it closes the
        connection."""
        body = text.encode("utf-8", "backslashreplace")
        head = (
            f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        try:
            sock.sendall(head.encode() + body)
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # the client has gone
            pass

    def read(self, stream: _Watched, length: int | None) -> bytes:
        """``length`` bytes of ``stream`` (all of a chunked body, but at most one byte more
        than ``max_bytes``), or :class:`BodyTooSlow`."""
        chunks, wanted = [], self.max_bytes + 1 if length is None else length
        while stream.received < wanted:
            chunk = stream.read(min(CHUNK, wanted - stream.received))
            if not chunk:
                break
            chunks.append(chunk)
        if stream.late or length is not None and stream.received < length:
            raise BodyTooSlow(stream.too_slow(length))
        return b"".join(chunks)
