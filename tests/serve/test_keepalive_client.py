"""Benchmark S's lean client (``benchmarks.serving.KeepAlive``) reads whole answers and their
statuses off one kept-alive connection, and reconnects when the server closes it."""

from __future__ import annotations

import importlib
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]  # the benchmarks are not installed: imported from here


def _keep_alive():
    sys.path.insert(0, str(REPO))
    try:
        return importlib.import_module("benchmarks.serving").KeepAlive
    finally:
        sys.path.remove(str(REPO))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless the answer says close
    connections: set = set()

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).connections.add(self.client_address)
        answer = body.upper() * 5000  # larger than one recv
        status = 400 if body == b"bad" else 200
        self.send_response(status)
        self.send_header("Content-Length", str(len(answer)))
        if body == b"close":
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.connections = set()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_statuses_come_back_and_the_connection_is_kept(server):
    client = _keep_alive()(server.server_address[1])
    assert [client.post(b) for b in (b"a", b"bad", b"b", b"c")] == [200, 400, 200, 200]
    assert len(_Handler.connections) == 1
    assert client.buffer == b""  # every answer was read whole, nothing of the next one
    client.close()


def test_a_closed_connection_is_opened_again(server):
    client = _keep_alive()(server.server_address[1])
    assert client.post(b"close") == 200
    assert client.sock is None
    assert client.post(b"a") == 200
    assert len(_Handler.connections) == 2
    client.close()
