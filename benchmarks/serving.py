"""Benchmark S (BENCHMARKS.md): the real server (``mfrec serve``: gunicorn) on loopback.

On a synthetic model (random seeded embeddings of mfrec's default size, 128 dimensions; 10 seen
items per user; saved as an artifact under /tmp) it measures:

- ``batch``: all users, ``top_n=25``, through ``mfrec transform`` (MultiRecord bodies of at most
  6 MB, CSV out) end to end, then the same records in-process: decoding, the Recommender (the
  model: matrix product + top-k) and encoding, timed apart; the share of the end-to-end time
  spent outside the model must stay under one half;
- ``latency``: single-record requests from 1, 8 and 32 concurrent client threads (keep-alive
  connections, :class:`KeepAlive`), p50/p99 latency, requests per second and errors;
- ``startup``: seconds from process start to the first 200 on ``/ping`` (100K and 1M users);
- ``memory``: peak RSS per worker and proportional (PSS) total for 1, 2 and 4 workers.

    python -m benchmarks.serving                       # every part
    python -m benchmarks.serving --parts batch,latency --users 100000 --items 50000

The clients run on the same machine as the server (and share its cores): the figures are a
floor, and the machine's load average is recorded beside them.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.common import Table, run_header, set_threads, write_results
from mfrec.local_server import LocalServer
from mfrec.train.artifact import ModelArtifact, save
from mfrec.train.config import TrainConfig

WORK = Path("/tmp/mfrec-bench-serving")
PARTS = ("batch", "latency", "startup", "memory")
EMBEDDING_DIM = TrainConfig().embedding_dim  # the size a job with no hyperparameters trains


def synthetic_artifact(
    num_users: int,
    num_items: int,
    embedding_dim: int = EMBEDDING_DIM,
    seen_per_user: int = 10,
    seed: int = 0,
) -> ModelArtifact:
    """Random embeddings, power-law popularity, ``seen_per_user`` random training items each."""
    rng = np.random.default_rng(seed)
    return ModelArtifact(
        user_embeddings=rng.standard_normal((num_users, embedding_dim), dtype=np.float32) * 0.1,
        item_embeddings=rng.standard_normal((num_items, embedding_dim), dtype=np.float32) * 0.1,
        user_biases=rng.standard_normal(num_users, dtype=np.float32) * 0.01,
        item_biases=rng.standard_normal(num_items, dtype=np.float32) * 0.01,
        user_ids=np.char.add("u", np.char.zfill(np.arange(num_users).astype(str), 7)),
        item_ids=np.char.add("i", np.char.zfill(np.arange(num_items).astype(str), 6)),
        item_popularity=(1e4 / (1 + rng.permutation(num_items)) ** 0.8).astype(np.float32),
        seen_indptr=np.arange(num_users + 1, dtype=np.int64) * seen_per_user,
        seen_indices=rng.integers(0, num_items, num_users * seen_per_user),
    )


def model_dir(num_users: int, num_items: int) -> Path:
    """The saved synthetic model of that size (built once, then reused from /tmp)."""
    path = WORK / f"model-{num_users}x{num_items}x{EMBEDDING_DIM}"
    if not (path / "model.json").is_file():
        save(synthetic_artifact(num_users, num_items), path)
    return path


def load_average() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def request(connection, body: bytes | None = None, path="/invocations") -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json", "Accept": "text/csv"}
    connection.request("POST" if body is not None else "GET", path, body=body, headers=headers)
    response = connection.getresponse()
    return response.status, response.read()


class Server(LocalServer):
    """``python -m mfrec serve`` on the CPU, output discarded; ``startup_seconds`` to the first
    200 on ``/ping``."""

    def __init__(self, model: Path, workers: int, env: dict | None = None) -> None:
        super().__init__(
            model,
            workers=workers,
            env={"MFREC_DEVICE": "cpu", **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            startup_timeout=600,
        )
        self.workers = workers

    def warm_up(self) -> None:
        """One request per worker (concurrently, so that each worker gets one)."""
        body = json.dumps({"user_id": "u0000000", "top_n": 25}).encode()
        threads = [
            threading.Thread(target=request, args=(self.connection(), body))
            for _ in range(2 * self.workers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def pids(self) -> list[int]:
        """The master's pid, then its workers'."""
        return [self.process.pid, *self.worker_pids()]


def memory_mib(pid: int) -> dict:
    """Peak resident (VmHWM), resident now (VmRSS) and proportional (Pss) memory, MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmHWM:", "VmRSS:")):
            fields[line.split(":")[0]] = int(line.split()[1]) / 1024
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            fields["Pss"] = int(line.split()[1]) / 1024
    return fields


# --------------------------------------------------------------------------------------------


def bench_batch(model: Path, num_users: int, threads: int) -> tuple[list[Table], dict]:
    """End to end through ``mfrec transform``, then the same body in-process."""
    from mfrec.serve import codecs
    from mfrec.serve.app import answer_records
    from mfrec.serve.recommender import Recommender
    from mfrec.transform import TransformJob, run

    lines = [b'{"user_id": "u%07d", "top_n": 25}\n' % k for k in range(num_users)]
    source = WORK / "batch" / "users.json"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(b"".join(lines))
    table = Table(
        f"Batch: {num_users:,} users, top_n=25, MultiRecord, CSV (higher records/s is better)",
        ["setup", "bodies", "seconds", "records/s", "server model s", "outside the model"],
    )
    results = {}
    configs = [  # (label, workers, MaxPayloadInMB; None: the server's /execution-parameters)
        (f"1 worker x {threads} torch threads, 6 MB bodies", 1, 6),
        (
            f"defaults: {threads} workers x 1 torch thread, 1 MB bodies, {threads} at a time",
            threads,
            None,
        ),
    ]
    for label, workers, payload_mb in configs:
        server = Server(model, workers, {"SAGEMAKER_BATCH": "true"})
        server.warm_up()
        job = TransformJob(strategy="MultiRecord", max_payload_mb=payload_mb)
        report = run(source, WORK / "batch" / "out", job, endpoint=server.url)
        server.stop()
        out = (WORK / "batch" / "out" / "users.json.out").read_bytes()
        assert out.count(b"\n") == 25 * num_users, "every user must get 25 rows"
        model_seconds = report.server_seconds["model"]
        result = results[label] = {
            "seconds": report.seconds,
            "requests": report.requests,
            "records_per_second": num_users / report.seconds,
            "request_seconds": report.request_seconds,
            "server_seconds": report.server_seconds,
            "outside_model_share": 1 - model_seconds / report.request_seconds,
            "load": load_average(),
        }
        table.rows.append(
            [
                label,
                report.requests,
                f"{report.seconds:.1f}",
                round(result["records_per_second"]),
                f"{model_seconds:.1f}",
                f"{result['outside_model_share']:.0%}",
            ]
        )

    # The same body in-process, with the threads of one worker.
    set_threads(threads)
    recommender = Recommender.from_dir(model, "cpu")
    recommender.warm_up()
    marks = [time.perf_counter()]
    records = codecs.decode(b"".join(lines), "application/json", strict=False)
    marks.append(time.perf_counter())
    answers = answer_records(recommender, records)
    marks.append(time.perf_counter())
    codecs.encode_csv(answers)
    marks.append(time.perf_counter())
    decode, model, encode = np.diff(marks)
    total = marks[-1] - marks[0]
    results["in_process"] = {
        "decode": decode,
        "model": model,
        "encode": encode,
        "records_per_second": num_users / total,
        "outside_model_share": 1 - model / total,
        "load": load_average(),
    }
    table.rows.append(
        [
            f"in-process, {threads} torch threads (decode {decode:.1f} s, encode {encode:.1f} s)",
            1,
            f"{total:.1f}",
            round(num_users / total),
            f"{model:.1f}",
            f"{1 - model / total:.0%}",
        ]
    )
    table.notes.append(
        "outside the model = 1 - (server time in the Recommender, from the Server-Timing "
        "header) / (request time as the client waited for it): HTTP, JSON parsing, CSV "
        "formatting; records/s are wall time of the whole transform (file I/O included)"
    )
    return [table], results


class KeepAlive:
    """One keep-alive HTTP/1.1 connection that sends single-record requests and reads the
    answers off a raw socket. It measures what ``http.client`` does (request written -> whole
    response read, its status) for about a tenth of the Python per request, so that client
    threads, which share the server's cores and one GIL, slow the server less at 8 and 32
    clients; at 1 client it is only faster."""

    def __init__(self, port: int, timeout: float = 30) -> None:
        self.port, self.timeout = port, timeout
        self.sock: socket.socket | None = None
        self.buffer = b""

    def post(self, body: bytes) -> int:
        """Send ``body`` to /invocations; the response's status once it has been read whole."""
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buffer = b""
        self.sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
            b"\r\nAccept: text/csv\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._receive()
        head = self.buffer[:end].lower()
        start = head.find(b"\r\ncontent-length:")
        if not head.startswith(b"http/1.1 ") or start < 0:
            self.close()
            raise http.client.HTTPException(f"unexpected response head {head[:200]!r}")
        line_end = head.find(b"\r\n", start + 2)
        length = int(head[start + 17 : line_end if line_end >= 0 else None])
        while len(self.buffer) < end + 4 + length:
            self._receive()
        self.buffer = self.buffer[end + 4 + length :]
        if b"\r\nconnection: close" in head:
            self.close()
        return int(head[9:12])

    def _receive(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            self.close()
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None


def _clients(server: Server, clients: int, seconds: float, num_users: int):
    """Latencies (s) and error count of ``clients`` threads sending requests for ``seconds``,
    each on its own keep-alive connection (:class:`KeepAlive`)."""
    latencies: list[float] = []
    errors = [0]
    stop_at = time.perf_counter() + seconds
    lock = threading.Lock()

    def client(seed: int) -> None:
        rng = random.Random(seed)
        connection = KeepAlive(server.port)
        mine, failed = [], 0
        while time.perf_counter() < stop_at:
            body = b'{"user_id": "u%07d", "top_n": 25}' % rng.randrange(num_users)
            started = time.perf_counter()
            try:
                status = connection.post(body)
            except (OSError, http.client.HTTPException, ValueError):
                status = 0
                connection.close()
            mine.append(time.perf_counter() - started)
            failed += status != 200
        connection.close()
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return np.array(latencies), errors[0]


def bench_latency(
    model: Path,
    workers: int,
    seconds: float,
    num_users: int,
    clients_list=(1, 8, 32),
    env: dict | None = None,
):
    server = Server(model, workers, env)
    server.warm_up()
    settings = " ".join(f"{k}={v}" for k, v in (env or {}).items())
    table = Table(
        f"Real time: single-record requests, top_n=25, {workers} workers {settings}".strip(),
        ["clients", "requests", "req/s", "p50 ms", "p99 ms", "errors"],
    )
    results = {}
    for clients in clients_list:
        latencies, errors = _clients(server, clients, seconds, num_users)
        ms = latencies * 1000
        row = {
            "requests": len(ms),
            "rps": len(ms) / seconds,
            "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)),
            "errors": errors,
            "load": load_average(),
        }
        results[clients] = row
        table.rows.append(
            [
                clients,
                row["requests"],
                round(row["rps"]),
                f"{row['p50_ms']:.1f}",
                f"{row['p99_ms']:.1f}",
                errors,
            ]
        )
    server.stop()
    table.notes.append(
        "client threads run in the benchmark's own Python process on the same cores as the "
        "server, each on one kept-alive connection read off a raw socket (KeepAlive; since "
        "session 7, before: http.client, which cost the shared cores more per request)"
    )
    return [table], results


def bench_startup(sizes: list[tuple[int, int]]):
    table = Table(
        "Start-up: process start to the first 200 on /ping (1 worker)",
        ["model", "artifact MB", "seconds", "master RSS MiB"],
    )
    results = {}
    for num_users, num_items in sizes:
        model = model_dir(num_users, num_items)
        size_mb = sum(f.stat().st_size for f in model.iterdir()) / 1e6
        server = Server(model, 1)
        rss = memory_mib(server.process.pid)["VmRSS"]
        server.stop()
        label = f"{num_users:,} users x {num_items:,} items"
        results[label] = {
            "seconds": server.startup_seconds,
            "artifact_mb": size_mb,
            "master_rss_mib": rss,
            "load": load_average(),
        }
        table.rows.append([label, round(size_mb), f"{server.startup_seconds:.1f}", round(rss)])
    # The floor no model can lower: starting Python and importing the server (torch, Flask).
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import mfrec.serve.server"], check=True)
    imports = results["imports"] = time.perf_counter() - started
    table.rows.append(
        ["no model: `python -c 'import mfrec.serve.server'`", 0, f"{imports:.1f}", ""]
    )
    table.notes.append(
        "includes Python and torch imports, the load of the artifact (its SHA-256 and array "
        "checks: on a thread started before the imports, since session 7), the item id "
        "dictionary, the fork of the worker and its warm-up; the arrays are memory-mapped and "
        "the user id dictionary is built after the port opens"
    )
    return [table], results


def bench_memory(model: Path, num_users: int):
    table = Table(
        "Memory after load and 2 rounds of 5,000-user bodies on every worker (MiB)",
        [
            "workers",
            "master peak RSS",
            "worker peak RSS (max)",
            "total PSS",
            "total RSS (naive sum)",
        ],
    )
    results = {}
    body = b"\n".join(b'{"user_id": "u%07d", "top_n": 25}' % k for k in range(5000))
    for workers in (1, 2, 4):
        server = Server(model, workers)
        server.warm_up()
        for _ in range(2):
            threads = [
                threading.Thread(target=request, args=(server.connection(), body))
                for _ in range(workers)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        memory = [memory_mib(pid) for pid in server.pids()]
        server.stop()
        row = {
            "master_peak_rss": memory[0]["VmHWM"],
            "worker_peak_rss": max(m["VmHWM"] for m in memory[1:]),
            "total_pss": sum(m["Pss"] for m in memory),
            "total_rss": sum(m["VmRSS"] for m in memory),
            "load": load_average(),
        }
        results[workers] = row
        table.rows.append(
            [
                workers,
                *[
                    round(row[k])
                    for k in ("master_peak_rss", "worker_peak_rss", "total_pss", "total_rss")
                ],
            ]
        )
    table.notes.append(
        "PSS counts a page shared by n processes as 1/n in each: the honest total "
        "when workers share the model copy-on-write"
    )
    return [table], results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"any of {','.join(PARTS)}")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--latency-seconds", type=float, default=8.0)
    parser.add_argument(
        "--large",
        default="1000000x100000",
        help="USERSxITEMS of the large start-up model, or 'none'",
    )
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: CPU cores)")
    parser.add_argument("--clients", default="1,8,32", help="concurrent clients, latency part")
    parser.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for the server (repeatable)"
    )
    parser.add_argument("--out-dir", type=Path, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    header = run_header("serving", "benchmarks.serving", argv)
    cores = os.cpu_count() or 1
    workers = args.workers or cores
    env = dict(item.split("=", 1) for item in args.env)
    model = model_dir(args.users, args.items)
    tables, results = [], {"load_before": load_average()}
    for part in args.parts.split(","):
        print(f"[serving] {part} ... (load {load_average()})", flush=True)
        if part == "batch":
            new_tables, results[part] = bench_batch(model, args.users, cores)
        elif part == "latency":
            clients = [int(c) for c in args.clients.split(",")]
            new_tables, results[part] = bench_latency(
                model, workers, args.latency_seconds, args.users, clients, env
            )
        elif part == "startup":
            sizes = [(args.users, args.items)]
            if args.large != "none":
                sizes.append(tuple(int(x) for x in args.large.split("x")))
            new_tables, results[part] = bench_startup(sizes)
        elif part == "memory":
            new_tables, results[part] = bench_memory(model, args.users)
        else:
            parser.error(f"unknown part {part!r}; use {','.join(PARTS)}")
        tables += new_tables
        print(new_tables[0].to_markdown(), flush=True)
    results["load_after"] = load_average()
    notes = [
        f"synthetic model {args.users:,} users x {args.items:,} items, {EMBEDDING_DIM} "
        "dimensions (mfrec's default), "
        f"10 seen items per user (masked), random seeded; loopback; load average "
        f"(1/5/15 min) before {results['load_before']}, after {results['load_after']}"
    ]
    json_path, md_path = write_results(header, tables, results, notes, args.out_dir)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
