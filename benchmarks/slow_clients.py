"""Slow clients against the real server (issue 17, item 4): does ``/ping`` still answer?

``mfrec serve`` (gunicorn, 2 workers, port 18701 on 127.0.0.1) serves a small synthetic model
with mfrec's worker (``head-first``: mfrec.serve.workers) or gunicorn's own ``gthread`` worker
(the worker before issue 17's header fix; everything else the same). For each kind of slow
client and each count, that many connections trickle their requests, reconnecting as soon as
they are cut (a hostile client), while one client sends ``/ping`` once a second on a fresh
connection with a 2 s timeout:

- ``headers``: the request line, then 3 bytes of one more header line every second;
- ``bodies``: a complete head announcing a 1 MB body, then 1 byte every 0.5 s.

Recorded: pings answered 200 within 2 s (of 12), the slowest ping, and how the tricklers were
cut (408s, and the median seconds a trickling connection lived). Then ``throughput``: one
server per worker, all up at once (ports 18701, 18702), get single-record requests from 1 and
8 client threads on kept-alive connections in 1.5 s bursts that alternate between them (the
machine's cores are shared and its load drifts: only alternated figures compare).

    python -m benchmarks.slow_clients                                  # everything
    python -m benchmarks.slow_clients --counts 64,256 --kinds headers --workers head-first

The tricklers run in one asyncio thread of this process, the pings in another.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

from benchmarks.common import Table, run_header, write_and_print
from benchmarks.serving import model_dir

PORT = 18701  # the server under slow clients; 18702 too for the throughput comparison
WORKERS = {"head-first": "mfrec.serve.workers.HeadFirstWorker", "gthread": "gthread"}
SERVE = (
    "import sys; from mfrec.serve import server; server.WORKER_CLASS = sys.argv[1]; "
    "server.serve(sys.argv[2], host='127.0.0.1', port=int(sys.argv[3]), workers=2)"
)
HEADERS_START = b"GET /ping HTTP/1.1\r\nHost: x\r\n"
HEADER_LINE = b"X-Trickle: 1\r\n"
BODY_HEAD = (
    b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 1000000\r\n\r\n"
)
PINGS = 12
BURST_SECONDS = 1.5
NUM_USERS, NUM_ITEMS = 10_000, 5_000


class Server:
    """``mfrec serve`` with ``worker_class`` on ``port`` in a child process, stopped with
    SIGTERM."""

    def __init__(self, worker_class: str, log, port: int = PORT) -> None:
        self.port = port
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                SERVE,
                worker_class,
                str(model_dir(NUM_USERS, NUM_ITEMS)),
                str(port),
            ],
            env={**os.environ, "MFREC_DEVICE": "cpu"},
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode}); see its log")
            try:
                if ping(port=port)[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the server did not answer /ping in 120 s")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)


def ping(timeout: float = 2.0, port: int = PORT) -> tuple[int | None, float]:
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", "/ping")
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException):
        status = None
    finally:
        connection.close()
    return status, time.perf_counter() - started


async def _trickle(kind: str, stop: asyncio.Event, cuts: list) -> None:
    """One hostile client: trickle, and reconnect whenever the server cuts the connection."""
    while not stop.is_set():
        started, answer = time.monotonic(), b""
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        try:
            writer.write(HEADERS_START if kind == "headers" else BODY_HEAD)
            step = 0
            while not stop.is_set():
                try:  # an answer (or the end of the connection) within the interval?
                    answer = await asyncio.wait_for(
                        reader.read(4096), 1.0 if kind == "headers" else 0.5
                    )
                    break
                except asyncio.TimeoutError:
                    pass
                if kind == "headers":
                    writer.write(HEADER_LINE[step % 5 * 3 :][:3])  # 3 bytes a second
                else:
                    writer.write(b" ")
                step += 1
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()
        if not stop.is_set():
            cuts.append((time.monotonic() - started, answer.split(b"\r\n", 1)[0]))


def slow_clients(kind: str, count: int) -> dict:
    """``count`` tricklers of ``kind`` while 12 pings are sent one second apart."""
    loop, stop, cuts = asyncio.new_event_loop(), None, []

    async def run_all():
        nonlocal stop
        stop = asyncio.Event()
        await asyncio.gather(*(_trickle(kind, stop, cuts) for _ in range(count)))

    thread = threading.Thread(target=loop.run_until_complete, args=(run_all(),), daemon=True)
    thread.start()
    time.sleep(2.0)  # every trickler has connected and started
    pings = []
    for _ in range(PINGS):
        pings.append(ping())
        time.sleep(max(0.0, 1.0 - pings[-1][1]))
    loop.call_soon_threadsafe(lambda: stop.set())
    thread.join(30)
    lived = [seconds for seconds, _ in cuts]
    return {
        "pings_under_2s": sum(status == 200 and wait < 2 for status, wait in pings),
        "slowest_ping_ms": round(max(wait for _, wait in pings) * 1000),
        "cuts": len(cuts),
        "cuts_408": sum(first.startswith(b"HTTP/1.1 408") for _, first in cuts),
        "median_life_s": round(statistics.median(lived), 1) if lived else None,
        "load": round(os.getloadavg()[0], 1),
    }


def burst(port: int, clients: int, seconds: float) -> tuple[int, int, list[float]]:
    """Single-record requests from ``clients`` threads on kept-alive connections for
    ``seconds``: (answered, errors, latencies in seconds)."""
    answered, errors, latencies, stop = [0], [0], [], threading.Event()

    def client(slot: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        number = slot
        while not stop.is_set():
            body = json.dumps({"user_id": f"u{number % NUM_USERS:07d}", "top_n": 10})
            number += clients
            started = time.perf_counter()
            try:
                connection.request(
                    "POST", "/invocations", body, {"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
            latencies.append(time.perf_counter() - started)
            answered[0] += ok
            errors[0] += not ok
        connection.close()

    threads = [threading.Thread(target=client, args=(slot,)) for slot in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(60)
    return answered[0], errors[0], latencies


def throughput(names: list[str], seconds: float, log) -> dict:
    """Each worker's server up at once (ports 18701, 18702, ...); bursts of 1 and 8 clients
    alternate between them until each had about ``seconds``, so that the shared machine's
    load drifts alike for all."""
    servers = {name: Server(WORKERS[name], log, PORT + n) for n, name in enumerate(names)}
    got = {(name, clients): [0, 0, []] for name in names for clients in (1, 8)}
    try:
        rounds = max(1, round(seconds / BURST_SECONDS))
        for _ in range(rounds):
            for (name, clients), total in got.items():
                answered, errors, latencies = burst(servers[name].port, clients, BURST_SECONDS)
                total[0] += answered
                total[1] += errors
                total[2] += latencies
    finally:
        for server in servers.values():
            server.stop()
    results = {}
    for (name, clients), (answered, errors, latencies) in got.items():
        p50, p99 = np.percentile(np.array(latencies) * 1000, [50, 99])
        results[f"{name}/throughput/{clients}"] = {
            "requests_per_s": round(answered / (rounds * BURST_SECONDS), 1),
            "errors": errors,
            "p50_ms": round(float(p50), 2),
            "p99_ms": round(float(p99), 2),
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", default="head-first,gthread", help="head-first,gthread")
    parser.add_argument("--kinds", default="headers,bodies", help="headers,bodies")
    parser.add_argument("--counts", default="64,256,1024", help="tricklers per measurement")
    parser.add_argument("--throughput-seconds", type=float, default=8.0, help="0: skip")
    parser.add_argument("--out-dir", help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    header = run_header("slow_clients", "benchmarks.slow_clients", argv)
    trickling = Table(
        "Slow clients (reconnecting) while /ping is sent once a second, 2 workers",
        [
            "worker",
            "slow clients",
            "count",
            "pings < 2 s (of 12)",
            "slowest ping ms",
            "cuts",
            "408s",
            "median life s",
            "load",
        ],
    )
    speed = Table(
        "Single-record requests on kept-alive connections (both servers up, bursts alternated)",
        ["worker", "clients", "req/s", "errors", "p50 ms", "p99 ms"],
    )
    results = {}
    with open("/tmp/mfrec-bench-slow-clients.log", "w") as log:
        names = args.workers.split(",")
        for name in names if args.kinds else ():
            server = Server(WORKERS[name], log)
            try:
                for kind in filter(None, args.kinds.split(",")):
                    for count in map(int, args.counts.split(",")):
                        got = slow_clients(kind, count)
                        results[f"{name}/{kind}/{count}"] = got
                        trickling.rows.append(
                            [
                                name,
                                kind,
                                count,
                                got["pings_under_2s"],
                                got["slowest_ping_ms"],
                                got["cuts"],
                                got["cuts_408"],
                                got["median_life_s"],
                                str(got["load"]),
                            ]
                        )
                        print(trickling.rows[-1], flush=True)
                        time.sleep(3)  # the last tricklers' connections are closed
            finally:
                server.stop()
        if args.throughput_seconds:
            got = throughput(names, args.throughput_seconds, log)
            results.update(got)
            for key, row in got.items():
                name, _, clients = key.split("/")
                speed.rows.append([name, int(clients), *row.values()])
                print(speed.rows[-1], flush=True)
    notes = [
        "gthread: gunicorn's own worker (before the header fix); head-first: mfrec's "
        "(requests read in the event loop, MFREC_HEADER_TIMEOUT and MFREC_BODY_TIMEOUT 10 s)",
        "cuts: trickling connections the server closed during the measurement; 408s: those "
        "that got a 408 first; median life: seconds from connect to cut",
    ]
    tables = [table for table in (trickling, speed) if table.rows]
    return write_and_print(header, tables, results, notes, args.out_dir)


if __name__ == "__main__":
    sys.exit(main())
