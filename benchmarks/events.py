"""Benchmark E: Personalize's events API on ``mfrec serve`` (issue 16): events ingested per
second (PutEvents), recommendations per second with events on and off in the same run, and the
latency a user's stored events add (the store read alone, and end to end).

    python -m benchmarks.events                       # SQLite, and Redis if redis-server is here
    python -m benchmarks.events --users 20000 --seconds 5 --parts store,ingest,recs

Parts:

- ``store``: ``histories([user])`` of a store holding ``--events-per-user`` events for each of
  ``--users`` users, in this process (SQLite file; Redis when ``redis-server`` is installed).
- ``ingest``: ``--clients`` threads POST /events (10 events per call, fresh ids) for
  ``--seconds`` to a server with ``--workers`` workers and a SQLite store (and a Redis one).
- ``recs``: the same users' GetRecommendations (POST /recommendations) against three servers:
  events off; events on for users with no stored events (the store read only); events on for
  users with stored events (store read + fold-in of the stored items).

Requests are unsigned on loopback (MFREC_AUTH_KEYS unset), as on a single host.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from benchmarks.common import Table, run_header, write_results
from benchmarks.serving import Server, load_average, synthetic_artifact
from mfrec.serve.events import Event, open_store
from mfrec.train.artifact import save

PARTS = ("store", "ingest", "recs")
EVENTS_PER_CALL = 10


def user_id(k: int) -> str:
    return f"u{k:07d}"  # benchmarks.serving.synthetic_artifact's ids


def seed_events(store, num_users: int, per_user: int, num_items: int) -> None:
    """``per_user`` events for each of the first ``num_users`` users, in calls of 10."""
    rng = np.random.default_rng(0)
    for k in range(num_users):
        items = rng.integers(0, num_items, per_user)
        events = [
            Event(uuid.uuid4().hex, user_id(k), f"i{item:06d}", "click", None, 1.7e9 + n, "s")
            for n, item in enumerate(items)
        ]
        for start in range(0, per_user, EVENTS_PER_CALL):
            store.put_events(events[start : start + EVENTS_PER_CALL])


class RedisServer:
    """A throw-away redis-server on a free loopback port (None when it is not installed)."""

    def __init__(self, folder: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", str(folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)

    @staticmethod
    def available() -> bool:
        try:
            import redis  # noqa: F401
        except ImportError:
            return False
        return shutil.which("redis-server") is not None


def warm_up(server) -> None:
    """A few recommendations per worker, each on its own closed connection."""
    body = json.dumps({"userId": user_id(0), "numResults": 25}).encode()
    for _ in range(4 * server.workers):
        connection = server.connection(600)
        connection.request("POST", "/recommendations", body, {"Content-Type": "application/json"})
        connection.getresponse().read()
        connection.close()


def percentiles(seconds: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    values = np.array(seconds) * 1000
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def bench_store(stores: dict[str, str], users: int, per_user: int, items: int, reads: int):
    table = Table(
        f"Reading one user's stored events ({per_user} per user, {users:,} users)",
        ["store", "p50 ms", "p99 ms", "reads/s (1 thread)", "seeding events/s (calls of 10)"],
    )
    results = {}
    for name, location in stores.items():
        store = open_store(location, max(per_user, 1))
        started = time.perf_counter()
        seed_events(store, users, per_user, items)
        seeding = users * per_user / (time.perf_counter() - started)
        rng = np.random.default_rng(1)
        durations = []
        for k in rng.integers(0, users, reads):
            started = time.perf_counter()
            store.histories([user_id(int(k))])
            durations.append(time.perf_counter() - started)
        p50, p99 = percentiles(durations)
        table.rows.append([name, p50, p99, len(durations) / sum(durations), seeding])
        results[name] = {"p50_ms": p50, "p99_ms": p99, "seeding_events_per_s": seeding}
        store.close()
    return table, results


def _load(server, clients: int, seconds: float, body_of) -> dict:
    """``clients`` threads posting ``body_of(rng)`` for ``seconds``; counts and latencies."""
    durations, errors, stop = [], [], time.monotonic() + seconds
    lock = threading.Lock()

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        connection, mine = server.connection(60), []
        while time.monotonic() < stop:
            path, body = body_of(rng)
            started = time.perf_counter()
            connection.request(
                "POST", path, body=body, headers={"Content-Type": "application/json"}
            )
            response = connection.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            if response.status != 200:
                errors.append(response.status)
        connection.close()
        with lock:
            durations.extend(mine)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    p50, p99 = percentiles(durations) if durations else (float("nan"),) * 2
    return {"calls": len(durations), "per_s": len(durations) / elapsed, "p50_ms": p50,
            "p99_ms": p99, "errors": len(errors)}  # fmt: skip


def put_events_body(rng, num_users: int, num_items: int) -> tuple[str, bytes]:
    events = [
        {
            "eventId": uuid.uuid4().hex,
            "eventType": "click",
            "sentAt": time.time(),
            "itemId": f"i{int(item):06d}",
        }  # fmt: skip
        for item in rng.integers(0, num_items, EVENTS_PER_CALL)
    ]
    user = user_id(int(rng.integers(num_users)))
    body = {"trackingId": "bench", "sessionId": "s", "userId": user, "eventList": events}
    return "/events", json.dumps(body).encode()


def bench_ingest(model: Path, stores: dict[str, str], args) -> tuple[Table, dict]:
    table = Table(
        f"PutEvents ingestion ({args.clients} clients, {args.workers} workers, "
        f"{EVENTS_PER_CALL} events per call, {args.seconds:g} s)",
        ["store", "events/s", "calls/s", "p50 ms", "p99 ms", "errors"],
    )
    results = {}
    for name, location in stores.items():
        with Server(model, args.workers, {"MFREC_EVENTS_DB": location}) as server:
            warm_up(server)
            measured = _load(
                server,
                args.clients,
                args.seconds,
                lambda rng: put_events_body(rng, args.users, args.items),
            )
        events_per_s = measured["per_s"] * EVENTS_PER_CALL
        table.rows.append(
            [
                name,
                events_per_s,
                measured["per_s"],
                measured["p50_ms"],
                measured["p99_ms"],
                measured["errors"],
            ]  # fmt: skip
        )
        results[name] = {**measured, "events_per_s": events_per_s}
    return table, results


def bench_recs(model: Path, sqlite_path: str, args) -> tuple[Table, dict]:
    """Same model, same requests; events off, on without stored events, on with them."""
    with_events = args.seeded_users  # users 0 .. seeded_users-1 have stored events

    def body(first: int, count: int):
        def make(rng) -> tuple[str, bytes]:
            user = user_id(first + int(rng.integers(count)))
            return "/recommendations", json.dumps({"userId": user, "numResults": 25}).encode()

        return make

    configs = [
        ("events off (MFREC_EVENTS_DB=off)", "off", body(0, with_events)),
        ("events on, users without stored events", sqlite_path, body(with_events, with_events)),
        (
            f"events on, users with {args.events_per_user} stored events",
            sqlite_path,
            body(0, with_events),
        ),
    ]
    table = Table(
        f"GetRecommendations, numResults 25 ({args.users:,} users x {args.items:,} items, "
        f"{args.workers} workers, SQLite store)",
        [
            "configuration",
            f"recs/s ({args.clients} clients)",
            "p50 ms (1 client)",
            "p99 ms (1 client)",
            "errors",
        ],  # fmt: skip
    )
    results = {}
    for name, location, make in configs:
        with Server(model, args.workers, {"MFREC_EVENTS_DB": location}) as server:
            warm_up(server)
            single = _load(server, 1, args.seconds / 2, make)
            loaded = _load(server, args.clients, args.seconds, make)
        table.rows.append(
            [
                name,
                loaded["per_s"],
                single["p50_ms"],
                single["p99_ms"],
                single["errors"] + loaded["errors"],
            ]  # fmt: skip
        )
        results[name] = {"single": single, "loaded": loaded}
    base = results[configs[0][0]]["single"]["p50_ms"]
    for name, _, _ in configs[1:]:
        added = results[name]["single"]["p50_ms"] - base
        table.notes.append(f"{name}: {added:+.2f} ms at p50 against events off (1 client)")
    return table, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"any of {','.join(PARTS)}")
    parser.add_argument("--users", type=int, default=50_000, help="users of the model")
    parser.add_argument("--items", type=int, default=20_000, help="items of the model")
    parser.add_argument("--seeded-users", type=int, default=2_000, help="users given events")
    parser.add_argument("--events-per-user", type=int, default=20, help="events of each")
    parser.add_argument("--seconds", type=float, default=8.0, help="load per measurement")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: CPU cores)")
    parser.add_argument("--reads", type=int, default=2000, help="store reads timed, part store")
    parser.add_argument("--redis", choices=("auto", "no"), default="auto", help="also Redis")
    parser.add_argument("--out-dir", type=Path, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    args.workers = args.workers or os.cpu_count() or 1
    args.seeded_users = min(args.seeded_users, args.users // 2)
    header = run_header("events", "benchmarks.events", argv)
    work = Path(tempfile.mkdtemp(prefix="mfrec-bench-events-"))
    model = save(synthetic_artifact(args.users, args.items), work / "model")
    redis = RedisServer(work) if args.redis == "auto" and RedisServer.available() else None
    tables, results = [], {"load_before": load_average()}
    try:
        for part in args.parts.split(","):
            print(f"[events] {part} ... (load {load_average()})", flush=True)
            stores = {"SQLite": str(work / f"{part}.sqlite")}
            if redis is not None:
                stores["Redis"] = f"{redis.url.rsplit('/', 1)[0]}/{PARTS.index(part)}"
            if part == "store":
                table, results[part] = bench_store(
                    stores, args.seeded_users, args.events_per_user, args.items, args.reads
                )
            elif part == "ingest":
                table, results[part] = bench_ingest(model, stores, args)
            elif part == "recs":
                store = open_store(stores["SQLite"], max(args.events_per_user, 1))
                seed_events(store, args.seeded_users, args.events_per_user, args.items)
                store.close()
                table, results[part] = bench_recs(model, stores["SQLite"], args)
            else:
                parser.error(f"unknown part {part!r}; use {','.join(PARTS)}")
            tables.append(table)
            print(table.to_markdown(), flush=True)
    finally:
        if redis is not None:
            redis.stop()
        shutil.rmtree(work, ignore_errors=True)
    results["load_after"] = load_average()
    notes = [
        f"synthetic model {args.users:,} users x {args.items:,} items (benchmarks.serving's), "
        f"CPU, loopback, unsigned requests; SQLite in WAL mode with synchronous=FULL on "
        f"{tempfile.gettempdir()}; Redis: "
        f"{'not installed' if redis is None else 'redis-server on loopback, no persistence'}; "
        f"load average (1/5/15 min) before {results['load_before']}, after {results['load_after']}"
    ]
    json_path, md_path = write_results(header, tables, results, notes, args.out_dir)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
