"""Slow clients through a real ``mfrec serve`` (gunicorn, 2 workers; issue 17, item 4): /ping
answers within 2 s while 64 clients trickle their bodies or 300 (more than the workers'
threads) trickle their headers; a body that falls behind the minimum rate, or a head not
complete within the header deadline, gets 408 and its connection is closed; normal, kept-alive,
pipelined, chunked and 100-continue requests and a head that arrives slowly but in time are
unaffected. Every wait is bounded: the tricklers stop when the test ends, the deadlines are 2 s
here."""

from __future__ import annotations

import http.client
import io
import signal
import socket
import threading
import time

import pytest
from gunicorn.http.errors import InvalidChunkSize
from known_answer import known_answer
from server_probes import accepted_by_a_worker, ping_waits

from mfrec.local_server import LocalServer
from mfrec.serve.bodies import BodyDeadline, Watchdog
from mfrec.train.artifact import save

GRACE_SECONDS = 2
HEADER_SECONDS = 2
HEADER_TRICKLERS = 300  # more than the old 2 workers x 128 threads
GOOD = b'{"user_id": "302", "top_n": 2}'


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slow")
    model_dir = save(known_answer(), folder / "model")
    env = {
        "MFREC_DEVICE": "cpu",
        "MFREC_BODY_TIMEOUT": str(GRACE_SECONDS),
        "MFREC_HEADER_TIMEOUT": str(HEADER_SECONDS),
    }
    with (
        open(folder / "server.log", "w+") as log,
        LocalServer(
            model_dir, workers=2, env=env, stdout=log, stderr=log, startup_timeout=120
        ) as running,
    ):
        yield running


def _trickle(port: int, stop: threading.Event, answers: list) -> None:
    """Send headers, then a byte every 0.2 s of a 1 MB body, until stopped or answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000\r\n\r\n"
        )
        try:
            while not stop.wait(0.2):
                sock.sendall(b" ")
        except OSError:  # the server answered 408 and closed
            pass
        sock.settimeout(2)
        try:
            answers.append(sock.recv(4096))
        except OSError:
            answers.append(b"")


def test_ping_answers_within_2_s_while_64_clients_trickle_bodies(server):
    stop, answers = threading.Event(), []
    clients = [
        threading.Thread(target=_trickle, args=(server.port, stop, answers), daemon=True)
        for _ in range(64)
    ]
    for client in clients:
        client.start()
    try:
        time.sleep(0.5)  # the tricklers have sent their headers and hold threads
        assert max(ping_waits(server)) < 2
        # Past the grace and far below the minimum rate: each trickler is answered 408.
        time.sleep(GRACE_SECONDS + 1)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=5)
    assert len(answers) == 64
    timed_out = [a for a in answers if a.startswith(b"HTTP/1.1 408")]
    assert len(timed_out) == 64, answers[:3]
    assert b"Connection: close" in timed_out[0] and b"too slowly" in timed_out[0]


def test_a_body_sent_at_normal_speed_is_answered(server):
    body = b'{"user_id": "302", "top_n": 2}\n' * 20_000  # 640 kB in several TCP segments
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        status, text = response.status, response.read()
    finally:
        connection.close()
    assert status == 200 and text.count(b"\n") == 2 * 20_000 - 1


def _request(body: bytes = GOOD, path: str = "/invocations") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _answers(sock: socket.socket, count: int) -> list[bytes]:
    """The next ``count`` responses on ``sock`` (each with a Content-Length)."""
    data, answers = b"", []
    while len(answers) < count:
        head, found, rest = data.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            None,
        )
        if found and length is not None and len(rest) >= length:
            answers.append(head + b"\r\n\r\n" + rest[:length])
            data = rest[length:]
            continue
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed after {len(answers)} answers"
        data += chunk
    return answers


def test_ping_answers_within_2_s_while_300_clients_trickle_headers(server):
    """Each trickler sends a request line, then a byte every 0.3 s of headers that never end:
    none holds a thread, and each is answered 408 and closed after the header deadline."""
    tricklers = []
    for _ in range(HEADER_TRICKLERS):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        tricklers.append(sock)
    started, stop = time.monotonic(), threading.Event()

    def trickle() -> None:
        live = list(tricklers)
        while live and not stop.wait(0.3):
            for sock in list(live):
                try:
                    sock.send(b"a")
                except OSError:  # answered 408 and closed
                    live.remove(sock)

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    try:
        assert max(ping_waits(server)) < 2
        time.sleep(max(0.0, started + HEADER_SECONDS + 2 - time.monotonic()))
    finally:
        stop.set()
        sender.join(timeout=5)
    answers, deadline = [], time.monotonic() + 10  # 10 s for all, however many hang
    for sock in tricklers:
        with sock:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                answers.append(sock.recv(4096))
            except OSError as exc:
                answers.append(repr(exc).encode())
    timed_out = [a for a in answers if a.startswith(b"HTTP/1.1 408")]
    assert len(timed_out) == HEADER_TRICKLERS, answers[:3]
    assert b"Connection: close" in timed_out[0] and b"MFREC_HEADER_TIMEOUT=2" in timed_out[0]


def test_a_head_that_arrives_slowly_but_in_time_is_served(server):
    request = _request()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        for start in range(0, len(request), 12):  # about 1.3 s for the head and body
            sock.sendall(request[start : start + 12])
            time.sleep(0.1)
        (answer,) = _answers(sock, 1)
    assert answer.startswith(b"HTTP/1.1 200")
    assert answer.split(b"\r\n\r\n")[1].count(b"\n") == 1  # top_n 2: two rows


def test_kept_alive_and_pipelined_requests_are_served_in_order(server):
    """Requests one after another on one connection, then three sent at once (the bytes of
    the next ones arrive with the first), then one whose head comes in two parts."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        for _ in range(2):
            sock.sendall(_request())
            assert _answers(sock, 1)[0].startswith(b"HTTP/1.1 200")
        ping = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
        sock.sendall(_request() + ping + _request(b'{"user_id": "302", "top_n": 1}'))
        first, second, third = _answers(sock, 3)
        request = _request()
        sock.sendall(request[:20])
        time.sleep(0.3)
        sock.sendall(request[20:])
        (fourth,) = _answers(sock, 1)
    assert all(a.startswith(b"HTTP/1.1 200") for a in (first, second, third, fourth))
    assert first.split(b"\r\n\r\n")[1].count(b"\n") == 1  # top_n 2: two rows
    assert third.split(b"\r\n\r\n")[1].count(b"\n") == 0  # top_n 1: one row


def test_chunked_and_100_continue_requests_are_answered(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(
            "POST",
            "/invocations",
            iter([GOOD[:10], GOOD[10:]]),
            {"Content-Type": "application/json"},
            encode_chunked=True,
        )
        response = connection.getresponse()
        chunked = response.status, response.read()
    finally:
        connection.close()
    assert chunked[0] == 200 and chunked[1].count(b"\n") == 1
    head, body = _request().split(b"\r\n\r\n")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + b"\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 100 Continue")  # the body is awaited
        sock.sendall(body)
        assert _answers(sock, 1)[0].startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize(
    "head, piece",
    [
        (b"Transfer-Encoding: chunked\r\n\r\n", b"1\r\n \r\n"),
        (b"Content-Length: 50000000\r\n\r\n", b" "),  # over the limit: the app discards it
    ],
    ids=["chunked", "over-the-limit"],
)
def test_chunked_and_over_the_limit_bodies_that_trickle_get_408(server, head, piece):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\n" + head)
        sock.settimeout(0.2)
        answer, deadline = b"", time.monotonic() + GRACE_SECONDS + 5
        while not answer and time.monotonic() < deadline:
            try:
                sock.sendall(piece)
                answer = sock.recv(4096)
            except TimeoutError:
                pass
            except OSError:  # answered and closed while sending
                sock.settimeout(2)
                answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n") and b"too slowly" in answer


def test_a_malformed_chunked_body_gets_400(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
        )
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"malformed" in answer


def test_a_head_over_64_kB_gets_431_and_is_closed(server):
    headers = b"".join(b"X-Pad-%d: %s\r\n" % (n, b"a" * 1000) for n in range(70))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n" + headers)
        answer = b"".join(iter(lambda: sock.recv(4096), b""))
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"Connection: close" in answer and b"longer than 64 kB" in answer


def test_sigterm_serves_a_head_still_arriving_then_exits(tmp_path):
    """A connection whose head is half sent when SIGTERM comes is still answered."""
    with (
        open(tmp_path / "server.log", "w+") as log,
        LocalServer(
            save(known_answer(), tmp_path / "model"),
            workers=1,
            env={"MFREC_DEVICE": "cpu"},
            stdout=log,
            stderr=log,
            startup_timeout=120,
        ) as running,
    ):
        request = _request()
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
            sock.sendall(request[:30])
            deadline = time.monotonic() + 30  # until the worker has accepted the connection
            while not accepted_by_a_worker(running, sock.getsockname()[1]):
                assert time.monotonic() < deadline, "no worker accepted the connection"
                time.sleep(0.01)
            running.process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            sock.sendall(request[30:])
            (answer,) = _answers(sock, 1)
        assert running.process.wait(timeout=40) == 0
    assert answer.startswith(b"HTTP/1.1 200") and b"Connection: close" in answer


class _Trickling(io.RawIOBase):
    """A body stream that gives one byte per read, each after ``delay`` seconds."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def read(self, size: int = -1) -> bytes:
        time.sleep(self.delay)
        return b"x"


def test_the_middleware_passes_bodies_it_does_not_read_through():
    seen = []

    def app(environ, start_response):
        seen.append(environ["wsgi.input"])
        start_response("200 OK", [])
        return [b""]

    middleware = BodyDeadline(app, max_bytes=10, grace_seconds=0.05, watchdog=Watchdog())
    for environ in (
        {"CONTENT_LENGTH": "5", "wsgi.input": "no socket"},
        {"CONTENT_LENGTH": "", "gunicorn.socket": object(), "wsgi.input": "no length"},
    ):
        middleware(environ, lambda *args: None)
    assert seen == ["no socket", "no length"]


def test_a_chunked_body_reaches_the_app_with_its_length():
    seen = []

    def app(environ, start_response):
        seen.append((environ["CONTENT_LENGTH"], environ["wsgi.input"].read(), environ))
        start_response("200 OK", [])
        return [b""]

    left, right = socket.socketpair()
    with left, right:
        environ = {
            "HTTP_TRANSFER_ENCODING": "chunked",
            "gunicorn.socket": left,
            "wsgi.input": io.BytesIO(b"abc"),  # what gunicorn's chunked reader gives
        }
        BodyDeadline(app, max_bytes=10)(environ, lambda *args: None)
    ((length, body, seen_environ),) = seen
    assert (length, body) == ("3", b"abc") and "HTTP_TRANSFER_ENCODING" not in seen_environ


class _BadChunks(io.RawIOBase):
    def read(self, size: int = -1) -> bytes:
        raise InvalidChunkSize(b"zz")


def _refusal(environ_input, headers: dict, max_bytes: int = 100) -> bytes:
    """What the client reads when ``BodyDeadline`` (2 ms/byte minimum rate after 0.05 s) gets
    a request with ``headers`` and the body ``environ_input``; the app reads the body."""

    def app(environ, start_response):
        while environ["wsgi.input"].read(10):
            pass
        start_response("413 Request Entity Too Large", [])
        return [b""]

    left, right = socket.socketpair()
    with left, right:
        middleware = BodyDeadline(app, max_bytes=max_bytes, grace_seconds=0.05, min_rate=500)
        environ = {**headers, "gunicorn.socket": left, "wsgi.input": environ_input}
        middleware(environ, lambda status, headers: None)
        right.settimeout(5)
        return b"".join(iter(lambda: right.recv(4096), b""))  # until the middleware shut it


def test_a_malformed_chunked_body_gets_400_and_is_closed():
    answer = _refusal(_BadChunks(), {"HTTP_TRANSFER_ENCODING": "chunked"})
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Connection: close" in answer and b"the chunked body is malformed" in answer


@pytest.mark.parametrize(
    "headers",
    [{"HTTP_TRANSFER_ENCODING": "chunked"}, {"CONTENT_LENGTH": "1000"}],
    ids=["chunked", "over-the-limit"],
)
def test_chunked_and_discarded_bodies_are_read_under_the_deadline(headers):
    """A slow chunked body, and a body over the limit that the app reads to discard it (it
    answers 413), get 408 and are closed: no body holds a thread past the deadline."""
    answer = _refusal(_Trickling(0.03), headers, max_bytes=10)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"Connection: close" in answer and b"too slowly" in answer


def test_a_body_slower_than_the_deadline_is_refused_with_408_and_closed():
    def app(environ, start_response):
        raise AssertionError("the app must not see a body that did not arrive")

    left, right = socket.socketpair()
    with left, right:
        middleware = BodyDeadline(app, max_bytes=100, grace_seconds=0.05, min_rate=1000)
        environ = {"CONTENT_LENGTH": "50", "gunicorn.socket": left, "wsgi.input": _Trickling(0.03)}
        middleware(environ, lambda status, headers: None)
        right.settimeout(5)
        answer = b"".join(iter(lambda: right.recv(4096), b""))  # until the middleware shut it
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"Connection: close" in answer and b"too slowly" in answer
