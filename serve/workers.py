"""A gunicorn ``gthread`` worker that gives a connection a thread only once its request has
arrived (issue 17, item 4: slow clients must not starve ``/ping``).

gunicorn's own ``gthread`` worker hands a connection to a thread as soon as it is readable; the
thread then blocks until the request line and headers are complete, with no deadline, so a
few hundred clients that trickle their headers a byte at a time hold every thread.
:class:`HeadFirstWorker` reads each new request (and each next request on a kept-alive
connection) without blocking in the worker's event loop instead:

- the head (request line and headers) must be complete within :attr:`~HeadFirstWorker.
  header_timeout` seconds of its first byte (``MFREC_HEADER_TIMEOUT``), else the client gets
  ``408 Request Timeout`` with ``Connection: close`` and the connection is closed; a
  connection that sends nothing is closed after gunicorn's ``keepalive`` seconds, as an idle
  kept-alive one is;
- a body (of known ``Content-Length``, or chunked) is read in the loop too, until the request
  is complete or :data:`STAGE_BYTES` bytes of it have arrived, within the body deadline of
  :mod:`mfrec.serve.bodies` (the same 408); larger bodies are then read by the thread under
  that deadline, so a thread is held only by a client that has shown it sends;
- a head larger than :data:`STAGE_BYTES` gets ``431`` and is closed.

Then the bytes read so far are given back to gunicorn's parser and the connection goes to a
thread exactly as gunicorn would send it. A worker holds at most gunicorn's
``worker_connections`` connections (1,000), so waiting requests cost at most
``worker_connections * STAGE_BYTES`` (64 MB) of memory, and no thread.

Only methods and attributes that gunicorn's ``gthread`` worker has had since version 22 are
used (``enqueue_req``, the one way to a thread; ``murder_keepalived``, called on every turn of
the loop; ``poller``, ``nr_conns``, and the connection's ``sock``, ``client`` and ``parser``).
TLS, HTTP/2 and uWSGI configurations, which mfrec does not use, skip the loop-side reading and
behave as gunicorn's own worker; so do kept-alive connections under gunicorn < 24 (see
:data:`_DRAINS_BODIES`).
"""

from __future__ import annotations

import contextlib
import io
import selectors
import time
from functools import partial

from gunicorn import http
from gunicorn.workers.gthread import ThreadWorker

from mfrec.serve import bodies

HEADER_TIMEOUT = 10.0  # seconds from a request's first byte to the end of its headers
STAGE_BYTES = 64 * 1024  # bytes of a request read in the loop: the largest head, and more
HEAD_END = b"\r\n\r\n"
CHUNKED = -1  # the body length of a chunked request
SWEEP_SECONDS = 0.25  # how often deadlines are checked
# gunicorn >= 24 discards what is left of a request's body before it keeps a connection alive;
# older versions discard it when the next request is read, so the loop leaves those alone.
_DRAINS_BODIES = hasattr(http.RequestParser, "finish_body")


class _Waiting:
    """A connection whose request is being read in the loop."""

    __slots__ = ("conn", "data", "idle_until", "started", "head_end", "head_done", "body_length")

    def __init__(self, conn, data: bytes, idle_until: float) -> None:
        self.conn = conn
        self.data = bytearray(data)
        self.idle_until = idle_until  # closed then if no byte has come
        self.started: float | None = None  # when its first byte came
        self.head_end = -1  # where the body starts, once the head is complete
        self.head_done = 0.0  # when the head was complete
        self.body_length = 0  # bytes of body to read in the loop

    def complete(self) -> bool:
        """Whether the body has come (once the head has)."""
        received = len(self.data) - self.head_end
        if self.body_length == CHUNKED:  # it ends with the last chunk, "0", and an empty line;
            # bytes that only look like that hand the request on early, and the thread reads
            # the rest under the body deadline
            return received >= len(b"0\r\n\r\n") and self.data.endswith(HEAD_END)
        return received >= self.body_length

    def deadline(self, header_timeout: float, body_grace: float) -> float:
        """When the head, then the body, is late (as mfrec.serve.bodies: a grace, then a
        minimum rate)."""
        if self.head_end < 0:
            return self.started + header_timeout
        received = len(self.data) - self.head_end
        return self.head_done + body_grace + received / bodies.MIN_RATE


def _body_length(head: bytes, max_bytes: int) -> int:
    """How many body bytes of the request with ``head`` to read in the loop: its
    ``Content-Length`` when that is the only framing and at most ``max_bytes``; :data:`CHUNKED`
    for a chunked body; else 0 (the parser refuses what is malformed, gunicorn answers
    ``Expect: 100-continue`` before the body is sent, the app answers 413 without waiting)."""
    lengths, codings, expect = [], [], False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            lengths.append(value.strip())
        elif name == b"transfer-encoding":
            codings.append(value.strip().lower())
        expect |= name == b"expect"
    if expect:
        return 0
    if codings:
        return CHUNKED if codings == [b"chunked"] and not lengths else 0
    if len(lengths) != 1 or not lengths[0].isdigit():
        return 0
    return int(lengths[0]) if int(lengths[0]) <= max_bytes else 0


class HeadFirstWorker(ThreadWorker):
    """gunicorn's ``gthread`` worker, with requests read in the event loop before a thread
    takes them (see the module docstring). ``mfrec serve`` sets the three attributes below
    from its settings after the fork."""

    header_timeout: float = HEADER_TIMEOUT
    body_grace: float = bodies.GRACE_SECONDS
    max_body_bytes: int = 6 * 2**20

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._waiting: dict[object, _Waiting] = {}
        self._next_sweep = 0.0

    def _reads_in_loop(self, conn) -> bool:
        cfg = self.cfg
        if conn.parser is not None and not _DRAINS_BODIES:
            return False  # its bytes may be the rest of the previous body: gunicorn's to read
        return not (
            cfg.is_ssl
            or getattr(cfg, "protocol", "http") != "http"
            or getattr(cfg, "http2_cleartext", "off") not in ("off", None)
        )

    def _poller_lock(self):
        """gunicorn < 24 registers kept-alive sockets from its threads, under ``_lock``."""
        lock = getattr(self, "_lock", None)
        return lock if hasattr(lock, "__enter__") else contextlib.nullcontext()

    def enqueue_req(self, conn) -> None:
        """gunicorn's way to a thread: a new or kept-alive connection comes here when it is
        readable; it goes on only with its request read (or with a head that cannot wait)."""
        if getattr(conn, "mfrec_ready", False) or not self._reads_in_loop(conn):
            conn.mfrec_ready = False  # its next request on this connection is read here again
            super().enqueue_req(conn)
            return
        data = b""
        if conn.parser is not None:  # read ahead of the previous request on this connection
            data = conn.parser.unreader.buf.getvalue()
            conn.parser.unreader.buf = io.BytesIO()
        conn.sock.setblocking(False)
        idle = self.cfg.keepalive or self.header_timeout  # as a kept-alive connection
        waiting = _Waiting(conn, data, time.monotonic() + idle)
        self._waiting[conn] = waiting
        if data:
            waiting.started = time.monotonic()
            if self._advance(waiting):
                return
        # A kept-alive connection comes here readable, and a new one often: read at once (a
        # turn of the loop less per request).
        if not self._read(waiting):
            with self._poller_lock():
                self.poller.register(
                    conn.sock, selectors.EVENT_READ, partial(self._readable, waiting)
                )

    def _readable(self, waiting: _Waiting, sock) -> None:
        self._read(waiting)

    def _read(self, waiting: _Waiting) -> bool:
        """Read what has come; True when ``waiting`` left the loop."""
        try:  # never more than STAGE_BYTES + 1 in all: len(data) <= STAGE_BYTES here
            chunk = waiting.conn.sock.recv(STAGE_BYTES + 1 - len(waiting.data))
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            chunk = b""
        if not chunk:  # the client has gone
            self._close(waiting)
            return True
        if waiting.started is None:
            waiting.started = time.monotonic()
        waiting.data += chunk
        return self._advance(waiting)

    def _advance(self, waiting: _Waiting) -> bool:
        """Hand ``waiting`` on, or refuse it, if its bytes allow; True when it left the loop."""
        data = waiting.data
        if waiting.head_end < 0:
            end = data.find(HEAD_END)
            if end < 0:
                if data.count(b"\n") != data.count(b"\r\n"):  # a bare LF: the parser's 400
                    self._hand_on(waiting)
                elif len(data) > STAGE_BYTES:
                    self._refuse(waiting, "431 Request Header Fields Too Large", self._too_large())
                else:
                    return False
                return True
            waiting.head_end = end + len(HEAD_END)
            waiting.head_done = time.monotonic()
            waiting.body_length = _body_length(bytes(data[:end]), self.max_body_bytes)
        if len(data) < STAGE_BYTES and not waiting.complete():
            return False
        self._hand_on(waiting)
        return True

    def _hand_on(self, waiting: _Waiting) -> None:
        """Give the bytes read to gunicorn's parser and the connection to a thread."""
        conn = waiting.conn
        self._leave(waiting)
        if conn.parser is None:
            conn.parser = http.RequestParser(self.cfg, conn.sock, conn.client)
        conn.parser.unreader.unread(bytes(waiting.data))
        conn.sock.setblocking(True)
        conn.data_ready = True  # gunicorn >= 24 would otherwise wait for bytes already read
        conn.mfrec_ready = True
        self.enqueue_req(conn)

    def murder_keepalived(self, *args, **kwargs) -> None:
        """gunicorn closes idle kept-alive connections here on every turn of its loop; late
        requests in the loop are answered 408 and closed here too."""
        super().murder_keepalived(*args, **kwargs)
        now = time.monotonic()
        if now < self._next_sweep or not self._waiting:
            return
        self._next_sweep = now + SWEEP_SECONDS
        for waiting in list(self._waiting.values()):
            if waiting.started is None and not self.alive and self._read(waiting):
                continue  # stopping: what has come is served, idle connections are closed
            if waiting.started is None:
                if now >= waiting.idle_until or not self.alive:
                    self._close(waiting)
            elif now >= waiting.deadline(self.header_timeout, self.body_grace):
                self._refuse(waiting, "408 Request Timeout", self._too_slow(waiting))

    def _too_slow(self, waiting: _Waiting) -> str:
        if waiting.head_end < 0:
            return (
                f"the request line and headers did not arrive within MFREC_HEADER_TIMEOUT="
                f"{self.header_timeout:g} s ({len(waiting.data)} bytes came); send them at once"
            )
        received = len(waiting.data) - waiting.head_end
        of = f" of {waiting.body_length}" if waiting.body_length > 0 else ""
        return (
            f"the body arrived too slowly ({received}{of} bytes; at least "
            f"{bodies.MIN_RATE / 1024:.0f} kB/s after the first {self.body_grace:g} s); send "
            "the body faster or in smaller requests"
        )

    @staticmethod
    def _too_large() -> str:
        return (
            f"the request line and headers are longer than {STAGE_BYTES // 1024} kB; "
            "send fewer or shorter headers"
        )

    def _refuse(self, waiting: _Waiting, status: str, text: str) -> None:
        """Answer ``status`` with ``text`` on the socket, without blocking, and close it."""
        body = text.encode("utf-8", "backslashreplace")
        head = (
            f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        sock = waiting.conn.sock
        try:
            sock.send(head.encode() + body)
            for _ in range(16):  # unread bytes would turn the close into a reset
                if not sock.recv(STAGE_BYTES):
                    break
        except OSError:  # nothing more to read now, or the client has gone
            pass
        self._close(waiting)

    def _leave(self, waiting: _Waiting) -> None:
        """Stop reading ``waiting`` in the loop."""
        if self._waiting.pop(waiting.conn, None) is None:
            return
        try:
            with self._poller_lock():
                self.poller.unregister(waiting.conn.sock)
        except (KeyError, ValueError, OSError):  # not registered yet
            pass

    def _close(self, waiting: _Waiting) -> None:
        self._leave(waiting)
        self.nr_conns -= 1
        waiting.conn.close()  # gunicorn's close ignores a socket that is gone
