"""Slow clients through a real ``mfrec serve`` (gunicorn, 2 workers; issue 17, item 4): /ping
answers within 2 s while 64 clients trickle their bodies, a body that falls behind the minimum
rate gets 408 and its connection is closed, and a normal body is unaffected. Every wait is
bounded: the tricklers stop when the test ends, the deadline is 2 s here."""

from __future__ import annotations

import http.client
import io
import socket
import threading
import time

import pytest
from known_answer import known_answer

from mfrec.local_server import LocalServer
from mfrec.serve.bodies import BodyDeadline, Watchdog
from mfrec.train.artifact import save

GRACE_SECONDS = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slow")
    model_dir = save(known_answer(), folder / "model")
    env = {"MFREC_DEVICE": "cpu", "MFREC_BODY_TIMEOUT": str(GRACE_SECONDS)}
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
        waits = []
        for _ in range(6):
            started = time.perf_counter()
            assert server.get("/ping", timeout=2)[0] == 200
            waits.append(time.perf_counter() - started)
            time.sleep(0.1)
        assert max(waits) < 2
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
        {"CONTENT_LENGTH": "11", "gunicorn.socket": object(), "wsgi.input": "too long"},
        {"CONTENT_LENGTH": "", "gunicorn.socket": object(), "wsgi.input": "no length"},
    ):
        middleware(environ, lambda *args: None)
    assert seen == ["no socket", "too long", "no length"]


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
