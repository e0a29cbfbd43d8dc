"""A real ``mfrec serve`` (gunicorn, 2 workers) on 127.0.0.1, configured the way SageMaker does
it: the model under $SAGEMAKER_BASE_DIR/model, the port from SAGEMAKER_BIND_TO_PORT, the
workers from SAGEMAKER_MODEL_SERVER_WORKERS. Every wait is bounded."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from known_answer import NUM_ITEMS, SEED, USER_IDS, known_answer
from server_probes import accepted_by_a_worker

from mfrec.local_server import LocalServer, free_port
from mfrec.train.artifact import save

START_TIMEOUT = 120  # seconds; importing torch is slow on a busy machine


def rows(user_id: str, top_n: int) -> list[str]:
    u = USER_IDS.index(user_id)
    ranking = [i for i in sorted(range(NUM_ITEMS), key=lambda i: ((u - i) ** 2, i)) if i != u]
    return [
        f"{user_id},i{i},{2 * u * i - i * i - i / (2 * NUM_ITEMS):.6f}" for i in ranking[:top_n]
    ]


def request(port, method, path, body=None, headers=None, timeout=30):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


class Server(LocalServer):
    """Configured as SageMaker configures it: the model under $SAGEMAKER_BASE_DIR/model, the
    port from SAGEMAKER_BIND_TO_PORT (overridden by --port here), 2 workers from
    SAGEMAKER_MODEL_SERVER_WORKERS; the log in a file."""

    def __init__(self, base_dir):
        self.log = open(base_dir / "server.log", "w+")  # noqa: SIM115 (closed in close_log)
        env = {
            "SAGEMAKER_BASE_DIR": str(base_dir),
            "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
            "MFREC_DEVICE": "cpu",
        }
        super().__init__(env=env, stdout=self.log, stderr=self.log, startup_timeout=START_TIMEOUT)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base_dir = tmp_path_factory.mktemp("opt_ml")
    save(known_answer(), base_dir / "model")
    running = Server(base_dir)
    yield running
    running.stop(graceful=False)
    running.log.close()


def test_port_opens_only_once_the_model_is_loaded(server):
    assert server.pings[-1] == 200 and 503 not in server.pings
    assert request(server.port, "GET", "/ping") == (200, "")


def test_seed_request_single_and_multi_record(server):
    headers = {"Content-Type": "application/json", "Accept": "text/csv"}
    multi = request(server.port, "POST", "/invocations", SEED, headers)
    single = [
        request(server.port, "POST", "/invocations", line, headers) for line in SEED.split(b"\n")
    ]
    assert multi == (200, "\n".join(rows("685", 5) + rows("302", 5)))
    assert "\n".join(text for _, text in single) == multi[1]


def test_execution_parameters_match_the_workers(server):
    status, text = request(server.port, "GET", "/execution-parameters")
    assert status == 200
    assert json.loads(text) == {
        "MaxConcurrentTransforms": 2,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 1,
    }


def test_concurrent_clients_get_their_own_answers(server):
    users = ["685", "302", "u3", "user_000061"] * 8

    def ask(user_id):
        body = json.dumps({"user_id": user_id, "top_n": 3})
        return request(
            server.port, "POST", "/invocations", body, {"Content-Type": "application/json"}
        )

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, users))
    assert answers == [(200, "\n".join(rows(user_id, 3))) for user_id in users]


def test_error_statuses_are_one_line_without_traceback(server):
    cases = [
        ({"Content-Type": "image/png"}, SEED, 415),
        ({"Accept": "image/png"}, SEED, 406),
        ({"Content-Type": "application/json"}, b"{oops", 400),
    ]
    for headers, body, status in cases:
        got, text = request(server.port, "POST", "/invocations", body, headers)
        assert got == status and "\n" not in text and "Traceback" not in text and text


def test_sigterm_drains_and_exits_cleanly(server):
    body = b"\n".join([b'{"user_id": "685", "top_n": 1}'] * 20_000)
    connection = server.connection(timeout=60)
    connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
    client_port = connection.sock.getsockname()[1]
    # SIGTERM only once a worker has accepted the request, so that draining is what is tested
    # (bounded: the request is in the kernel's queue and an idle worker takes it).
    deadline = time.monotonic() + 60
    while not accepted_by_a_worker(server, client_port):
        assert time.monotonic() < deadline, "no worker accepted the request"
        time.sleep(0.01)
    server.process.send_signal(signal.SIGTERM)
    response = connection.getresponse()
    status, text = response.status, response.read().decode()
    connection.close()
    assert status == 200 and text.split("\n") == rows("685", 1) * 20_000
    assert server.process.wait(timeout=40) == 0
    log = server.output()
    assert "Shutting down: Master" in log and "Traceback" not in log


def test_missing_model_exits_with_a_readable_error(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mfrec",
            "serve",
            "--model-dir",
            str(tmp_path / "none"),
            "--host",
            "127.0.0.1",
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )
    assert result.returncode == 1
    assert "mfrec serve: error:" in result.stderr and "holds no mfrec model" in result.stderr


def test_the_model_loaded_on_a_thread_is_the_model_load_reads(tmp_path):
    # `mfrec serve` loads the model while it imports torch and the server; serve() takes the
    # result, or the load's own error, from the future.
    import numpy as np

    from mfrec.commands.serving import _load_in_background
    from mfrec.train.artifact import load
    from mfrec.train.errors import ArtifactError

    save(known_answer(), tmp_path / "model")
    loaded, direct = _load_in_background(tmp_path / "model").result(), load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.item_embeddings, direct.item_embeddings)
    assert list(loaded.user_ids) == list(direct.user_ids)
    with pytest.raises(ArtifactError, match="model.json is missing"):
        _load_in_background(tmp_path / "nowhere").result()
