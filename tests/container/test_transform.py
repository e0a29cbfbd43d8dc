"""``mfrec transform``: SageMaker's batch transform reproduced locally, byte for byte."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from known_answer import NUM_ITEMS, SEED, USER_IDS, known_answer

from mfrec import invocations, transform
from mfrec.cli import main
from mfrec.local_server import LocalServer
from mfrec.train.artifact import save
from mfrec.train.errors import ConfigError
from mfrec.transform import TransformFailed, TransformJob, bodies, input_files


def seed_out() -> bytes:
    """The seed's .out: top_n rows per request, best first, each line ending with a newline."""
    lines = []
    for user_id in ("685", "302"):
        u = USER_IDS.index(user_id)
        ranking = [i for i in sorted(range(NUM_ITEMS), key=lambda i: ((u - i) ** 2, i)) if i != u]
        lines += [
            f"{user_id},i{i},{2 * u * i - i * i - i / (2 * NUM_ITEMS):.6f}\n" for i in ranking[:5]
        ]
    return "".join(lines).encode()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save(known_answer(), tmp_path_factory.mktemp("model") / "model")


@pytest.fixture(scope="module")
def endpoint(model_dir, tmp_path_factory):
    with (
        open(tmp_path_factory.mktemp("log") / "server.log", "w+") as log,
        LocalServer(
            model_dir,
            workers=2,
            env={"SAGEMAKER_BATCH": "true", "MFREC_DEVICE": "cpu"},
            stdout=log,
            stderr=log,
            startup_timeout=120,
        ) as server,
    ):
        yield server.url


@pytest.fixture
def seed_file(tmp_path):
    path = tmp_path / "input" / "seed.json"
    path.parent.mkdir()
    path.write_bytes(SEED)
    return path


@pytest.mark.parametrize("strategy", ["SingleRecord", "MultiRecord"])
def test_seed_request_file_gives_the_seed_out_byte_for_byte(
    endpoint, seed_file, tmp_path, strategy
):
    job = TransformJob(strategy=strategy)
    report = transform.run(seed_file, tmp_path / "out", job, endpoint=endpoint)
    out = (tmp_path / "out" / "seed.json.out").read_bytes()
    assert out == seed_out()
    assert out.count(b"\n") == 10 and b"\n\n" not in out
    assert (report.records, report.requests) == (2, 2 if strategy == "SingleRecord" else 1)
    assert set(report.server_seconds) == {"decode", "model", "encode"}
    assert 0 <= report.server_seconds["model"] <= report.request_seconds  # summed over requests
    assert report.summary().startswith(f"wrote 1 .out file(s): 2 records in {report.requests} ")


def test_cli_starts_its_own_server_for_a_model_dir(model_dir, seed_file, tmp_path, capsys):
    code = main(
        [
            "transform",
            str(seed_file),
            "--output",
            str(tmp_path / "out"),
            "--model-dir",
            str(model_dir),
            "--strategy",
            "SingleRecord",
            "--workers",
            "1",
        ]
    )
    assert code == 0
    assert (tmp_path / "out" / "seed.json.out").read_bytes() == seed_out()
    assert "wrote 1 .out file(s): 2 records in 2 requests" in capsys.readouterr().out


def test_folder_of_files_other_formats_and_concurrency(endpoint, tmp_path):
    (tmp_path / "in" / "part").mkdir(parents=True)
    (tmp_path / "in" / "a.csv").write_text("685,2\n302,1\n")
    (tmp_path / "in" / "part" / "b.csv").write_text("\n".join(["u3,1"] * 50))
    job = TransformJob(
        content_type="text/csv",
        accept="application/jsonlines",
        strategy="SingleRecord",
        max_concurrent=4,
    )
    transform.run(tmp_path / "in", tmp_path / "in" / "out", job, endpoint=endpoint)
    a = (tmp_path / "in" / "out" / "a.csv.out").read_text().splitlines()
    b = (tmp_path / "in" / "out" / "part" / "b.csv.out").read_text().splitlines()
    assert [line[:20] for line in a] == ['{"user_id": "685", "', '{"user_id": "302", "']
    assert len(b) == 50 and len(set(b)) == 1
    again = transform.run(tmp_path / "in", tmp_path / "in" / "out", job, endpoint=endpoint)
    assert len(again.outputs) == 2  # the output folder inside the input is not read back


def test_multi_record_bodies_respect_max_payload_and_never_split_lines(tmp_path):
    path = tmp_path / "records.json"
    lines = [b'{"user_id": "%d"}\n' % k for k in range(100_000)]
    path.write_bytes(b"".join(lines))
    groups = list(bodies(path, "MultiRecord", 1))
    assert all(len(body) <= 1024 * 1024 for body, _ in groups) and len(groups) == 2
    assert b"".join(body for body, _ in groups) == path.read_bytes()
    assert sum(count for _, count in groups) == 100_000
    assert [body for body, _ in bodies(path, "SingleRecord", 6)][:2] == lines[:2]
    assert len(list(bodies(path, "MultiRecord", 0))) == 1  # 0: no limit


def test_a_line_larger_than_max_payload_fails_its_file(tmp_path):
    path = tmp_path / "big.json"
    path.write_bytes(b'{"user_id": "' + b"x" * (1024 * 1024) + b'"}')
    with pytest.raises(TransformFailed, match="line 1 of .* more than MaxPayloadInMB=1; raise"):
        list(bodies(path, "MultiRecord", 1))


class FlakyHandler(BaseHTTPRequestHandler):
    """Answers 500 to the first ``failures`` invocations of each body, then echoes the body."""

    failures = 0
    seen: dict = {}

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        count = self.seen[body] = self.seen.get(body, 0) + 1
        status, answer = (500, b"boom") if count <= self.failures else (200, body.strip())
        self.send_response(status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyHandler)
    FlakyHandler.seen = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_non_2xx_answers_are_retried_three_times(flaky, tmp_path, caplog):
    server, url = flaky
    FlakyHandler.failures = 3
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.json").write_bytes(b'{"user_id": "1"}\n{"user_id": "2"}')
    job = TransformJob(strategy="SingleRecord", retry_delay=0)
    transform.run(tmp_path / "in", tmp_path / "out", job, endpoint=url)
    assert (tmp_path / "out" / "a.json.out").read_bytes() == (
        b'{"user_id": "1"}\n{"user_id": "2"}\n'
    )
    assert list(FlakyHandler.seen.values()) == [4, 4]
    assert "invocation failed (attempt 3 of 4): HTTP 500: boom" in caplog.text


def test_a_file_whose_answers_keep_failing_gets_no_out_and_the_job_fails(flaky, tmp_path):
    server, url = flaky
    FlakyHandler.failures = 4
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.json").write_bytes(b'{"user_id": "1"}')
    job = TransformJob(strategy="SingleRecord", retry_delay=0)
    with pytest.raises(TransformFailed, match=r"1 of 1 input file\(s\) got no .out .*HTTP 500"):
        transform.run(tmp_path / "in", tmp_path / "out", job, endpoint=url)
    assert list((tmp_path / "out").iterdir()) == []


def test_settings_come_from_execution_parameters_unless_given():
    parameters = {
        "BatchStrategy": "SINGLE_RECORD",
        "MaxPayloadInMB": 20,
        "MaxConcurrentTransforms": 3,
    }
    assert TransformJob().resolved(parameters) == TransformJob(
        strategy="SingleRecord", max_payload_mb=20, max_concurrent=3
    )
    assert TransformJob(strategy="MultiRecord", max_payload_mb=1).resolved(parameters) == (
        TransformJob(strategy="MultiRecord", max_payload_mb=1, max_concurrent=3)
    )
    assert TransformJob().resolved({}) == TransformJob(
        strategy="MultiRecord", max_payload_mb=6, max_concurrent=1
    )


def test_bad_settings_and_inputs_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="strategy 'Batch'; use SingleRecord or MultiRecord"):
        TransformJob(strategy="Batch")
    with pytest.raises(ConfigError, match="max_payload_mb=101; use 0"):
        TransformJob(max_payload_mb=101)
    with pytest.raises(ConfigError, match="input .* does not exist"):
        input_files(tmp_path / "nothing", tmp_path / "out")
    with pytest.raises(ConfigError, match="holds no files"):
        input_files(tmp_path, tmp_path / "out")
    with pytest.raises(ConfigError, match="give either an endpoint URL or a model folder"):
        transform.run(tmp_path, tmp_path / "out", TransformJob())
    with pytest.raises(ConfigError, match="is not an http"):
        invocations.Client("localhost:8080", TransformJob())


def test_transform_needs_an_endpoint_or_a_model(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["transform", str(tmp_path), "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "one of the arguments --endpoint --model-dir is required" in capsys.readouterr().err


@pytest.mark.parametrize("accept", ["text/csv", "application/jsonlines"])
def test_each_hostile_class_among_good_lines_is_an_error_row_not_a_failed_file(
    endpoint, tmp_path, accept
):
    """Issue 17: one bad line among good ones used to fail the whole file after 4 tries."""
    from hostile_records import GOOD, JSON_RECORDS

    lines = []
    for line, _ in JSON_RECORDS.values():
        lines += [GOOD] * 2 + [line]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "mixed.json").write_bytes(b"\n".join(lines) + b"\n")
    job = TransformJob(accept=accept, max_retries=0)
    report = transform.run(tmp_path / "in", tmp_path / "out", job, endpoint=endpoint)
    assert report.records == len(lines) and not report.failures
    out = (tmp_path / "out" / "mixed.json.out").read_text().splitlines()
    good = [r for r in out if r.startswith("685,i") or r.startswith('{"user_id": "685", "item')]
    errors = [r for r in out if "error" in r]
    assert len(good) == 2 * len(JSON_RECORDS) * (3 if accept == "text/csv" else 1)
    assert len(errors) == len(JSON_RECORDS)
    for error, (_, phrase) in zip(errors, JSON_RECORDS.values(), strict=True):
        assert phrase in error.replace('""', '"')


def test_outputs_replace_links_in_the_output_folder_never_follow_them(
    endpoint, seed_file, tmp_path
):
    """A link planted where the output (or its old temporary name) goes is replaced; the file
    it points to is never written."""
    out, victim = tmp_path / "out", tmp_path / "victim.txt"
    out.mkdir()
    victim.write_text("keep me")
    (out / "seed.json.out").symlink_to(victim)
    (out / "seed.json.out.partial").symlink_to(victim)
    transform.run(seed_file, out, TransformJob(), endpoint=endpoint)
    assert victim.read_text() == "keep me"
    assert not (out / "seed.json.out").is_symlink()
    assert (out / "seed.json.out").read_bytes() == seed_out()
    assert sorted(p.name for p in out.iterdir()) == ["seed.json.out", "seed.json.out.partial"]


def test_long_input_names_are_transformed_or_refused_in_one_line(endpoint, tmp_path):
    (tmp_path / "in").mkdir()
    longest = "a" * 246 + ".json"  # 251 bytes: the .out name has 255, the most a name may
    too_long = "b" * 250 + ".json"
    for name in (longest, too_long):
        (tmp_path / "in" / name).write_bytes(SEED)
    with pytest.raises(TransformFailed, match="1 of 2 input file.*would be longer than 255 bytes"):
        transform.run(tmp_path / "in", tmp_path / "out", TransformJob(), endpoint=endpoint)
    assert (tmp_path / "out" / (longest + ".out")).read_bytes() == seed_out()
    assert [p.name for p in (tmp_path / "out").iterdir()] == [longest + ".out"]
