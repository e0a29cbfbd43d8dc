"""Soak (issue 15, item 7): a bounded mixed load on the real server (``mfrec serve``: gunicorn)
while the server's memory is sampled, to catch leaks and errors that short benchmarks miss.

``--clients`` threads (keep-alive connections) send requests for ``--seconds``, each drawn from
:data:`MIX`: user, history, similar items, rank, popular, Personalize-shaped records on
/invocations and on Personalize's REST paths, a small MultiRecord body, an unknown user, with
filters (``exclude_items``, ``include_items``, ``filterExpression`` with ``filterValues``). Every
``--sample-every`` seconds the resident memory (RSS; and its anonymous part, RSS minus
file-backed pages: the memory-mapped model's pages are file-backed) of the gunicorn master and
each worker is recorded with psutil.

Results: requests/s, errors (a non-200 answer, a failed connection, or a 200 that carries an
``"error"`` for a record), and memory growth = (last sample - first sample after ``--warm-up``)
/ first sample after warm-up, of the total RSS (target < 5%), per worker and anonymous alone.

    python -m benchmarks.soak                        # 10 minutes, 8 clients, 2 workers
    python -m benchmarks.soak --seconds 20 --warm-up 5 --sample-every 1

The clients run on the same machine as the server: requests/s are a floor.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import threading
import time

import numpy as np
import psutil

from benchmarks.common import Table, run_header, write_results
from benchmarks.serving import Server, load_average, model_dir

GROWTH_TARGET = 0.05

# (name, path, content type, weight, body maker: (rng, num_users, num_items) -> object or str)
_U = "u{:07d}".format  # benchmarks.serving.synthetic_artifact's ids
_I = "i{:06d}".format


def _items(rng, num_items, n):
    return [_I(rng.randrange(num_items)) for _ in range(n)]


def _quoted(ids):
    return ",".join(f'"{item}"' for item in ids)  # Personalize's filterValues quoting


MIX = [
    ("user", "/invocations", "json", 4, lambda r, u, i: {"user_id": _U(r.randrange(u))}),
    ("user+exclude_items", "/invocations", "json", 2,
     lambda r, u, i: {"user_id": _U(r.randrange(u)), "top_n": 10,
                      "exclude_items": _items(r, i, 5)}),
    ("history", "/invocations", "json", 2,
     lambda r, u, i: {"history": _items(r, i, 5), "top_n": 10}),
    ("similar_items+include_items", "/invocations", "json", 2,
     lambda r, u, i: {"item_id": _I(r.randrange(i)), "top_n": 10,
                      "include_items": _items(r, i, 50)}),
    ("rank (one unknown item)", "/invocations", "json", 2,
     lambda r, u, i: {"user_id": _U(r.randrange(u)), "item_ids": [*_items(r, i, 20), "none"]}),
    ("popular+exclude_seen", "/invocations", "json", 1,
     lambda r, u, i: {"top_n": 10, "user_id": _U(r.randrange(u)), "type": "popular",
                      "exclude_seen": True}),
    ("unknown user (fallback)", "/invocations", "json", 1,
     lambda r, u, i: {"user_id": f"nobody-{r.randrange(10**9)}", "top_n": 10}),
    ("Personalize user+filterExpression", "/invocations", "json", 2,
     lambda r, u, i: {"userId": _U(r.randrange(u)), "numResults": 10,
                      "filterExpression": "EXCLUDE ItemID WHERE Items.ITEM_ID IN ($IDS)",
                      "filterValues": {"IDS": _quoted(_items(r, i, 3))}}),
    ("Personalize itemId", "/invocations", "json", 1,
     lambda r, u, i: {"itemId": _I(r.randrange(i)), "numResults": 10}),
    ("Personalize inputList", "/invocations", "json", 1,
     lambda r, u, i: {"userId": _U(r.randrange(u)), "inputList": _items(r, i, 10)}),
    ("GetRecommendations (REST)", "/recommendations", "json", 1,
     lambda r, u, i: {"userId": _U(r.randrange(u)), "numResults": 10,
                      "filterExpression": 'INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")'}),
    ("MultiRecord (8 users)", "/invocations", "jsonlines", 1,
     lambda r, u, i: "\n".join(json.dumps({"user_id": _U(r.randrange(u))}) for _ in range(8))),
]  # fmt: skip

_TYPES = {"json": "application/json", "jsonlines": "application/jsonlines"}


def record_errors(payload: bytes) -> int:
    """How many records of a 200 answer (JSON, JSON lines or Personalize's shape) failed."""
    lines = [json.loads(line) for line in payload.splitlines() if line.strip()]
    records = []
    for obj in lines:
        records.extend(
            obj["predictions"] if isinstance(obj, dict) and "predictions" in obj else [obj]
        )
    return sum(1 for obj in records if isinstance(obj, dict) and obj.get("error"))


class MemorySampler(threading.Thread):
    """Every ``every`` seconds: RSS and anonymous RSS (MiB) of the server's master and workers."""

    def __init__(self, pid: int, every: float) -> None:
        super().__init__(daemon=True)
        self.master, self.every = psutil.Process(pid), every
        self.samples: list[dict] = []
        self.started = time.perf_counter()
        self._done = threading.Event()

    def sample(self) -> None:
        processes = {"master": self.master}
        for child in self.master.children(recursive=True):
            processes[f"worker {child.pid}"] = child
        found = {}
        for name, process in processes.items():
            try:
                info = process.memory_info()
            except psutil.Error:
                continue  # a worker that just exited (gunicorn replaces it)
            found[name] = {"rss": info.rss / 2**20, "anon": (info.rss - info.shared) / 2**20}
        self.samples.append(
            {
                "t": time.perf_counter() - self.started,
                "rss_total": sum(p["rss"] for p in found.values()),
                "anon_total": sum(p["anon"] for p in found.values()),
                "processes": found,
            }
        )

    def run(self) -> None:
        while not self._done.is_set():
            self.sample()
            self._done.wait(self.every)

    def stop(self) -> None:
        self._done.set()
        self.join()
        self.sample()  # the last sample, after the load ended


def drive(server: Server, clients: int, seconds: float, num_users: int, num_items: int):
    """Run the mix for ``seconds``: per request type, (requests, errors, latencies in s)."""
    stop_at = time.perf_counter() + seconds
    stats = {name: {"requests": 0, "errors": 0, "latencies": []} for name, *_ in MIX}
    examples: list[str] = []
    lock = threading.Lock()
    weights = [weight for _, _, _, weight, _ in MIX]

    def client(seed: int) -> None:
        rng = random.Random(seed)
        connection = server.connection(60)
        mine = {name: [0, 0, []] for name, *_ in MIX}
        while time.perf_counter() < stop_at:
            name, path, kind, _, make = rng.choices(MIX, weights)[0]
            body = make(rng, num_users, num_items)
            body = (body if isinstance(body, str) else json.dumps(body)).encode()
            headers = {"Content-Type": _TYPES[kind], "Accept": "application/json"}
            started = time.perf_counter()
            try:
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                status, payload = response.status, response.read()
                failed = status != 200 or record_errors(payload) > 0
            except (OSError, http.client.HTTPException, ValueError) as exc:
                status, payload, failed = 0, repr(exc).encode(), True
                connection.close()
                connection = server.connection(60)
            mine[name][0] += 1
            mine[name][1] += failed
            mine[name][2].append(time.perf_counter() - started)
            if failed and len(examples) < 5:
                examples.append(f"{name}: {status} {payload[:200]!r} for {body[:200]!r}")
        connection.close()
        with lock:
            for key, (requests, errors, latencies) in mine.items():
                stats[key]["requests"] += requests
                stats[key]["errors"] += errors
                stats[key]["latencies"].extend(latencies)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return stats, examples


def warm_up(server: Server) -> None:
    """Two requests per worker at once, each on its own connection, closed."""

    def one() -> None:
        connection = server.connection(600)
        body = json.dumps({"user_id": _U(0)}).encode()
        connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
        connection.getresponse().read()
        connection.close()

    threads = [threading.Thread(target=one) for _ in range(2 * server.workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def growth(samples: list[dict], warm_up: float, key: str) -> tuple[float, float, float]:
    """(value at the first sample after ``warm_up`` s, value at the last sample, growth ratio)."""
    after = [s for s in samples if s["t"] >= warm_up] or samples[-1:]
    first, last = after[0][key], samples[-1][key]
    return first, last, (last - first) / first


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--warm-up", type=float, default=60, help="seconds before the baseline")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--users", type=int, default=20000)
    parser.add_argument("--items", type=int, default=10000)
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--out-dir", default=None)
    args = parser.parse_args(argv)
    if not 0 <= args.warm_up < args.seconds:
        parser.error(f"--warm-up {args.warm_up} must be at least 0 and below --seconds")
    header = run_header("soak", "benchmarks.soak", argv)
    model = model_dir(args.users, args.items)
    load_before = load_average()
    server = Server(model, args.workers)
    try:
        warm_up(server)
        workers_before = sorted(server.worker_pids())
        sampler = MemorySampler(server.process.pid, args.sample_every)
        sampler.start()
        started = time.perf_counter()
        stats, examples = drive(server, args.clients, args.seconds, args.users, args.items)
        elapsed = time.perf_counter() - started
        sampler.stop()
        workers_after = sorted(server.worker_pids())
    finally:
        server.stop()
    return report(args, header, stats, examples, sampler.samples, elapsed, load_before,
                  workers_before != workers_after)  # fmt: skip


def report(args, header, stats, examples, samples, elapsed, load_before, restarted) -> int:
    requests = sum(s["requests"] for s in stats.values())
    errors = sum(s["errors"] for s in stats.values())
    rss = growth(samples, args.warm_up, "rss_total")
    anon = growth(samples, args.warm_up, "anon_total")
    summary = Table(
        f"Soak: {args.clients} clients, {args.workers} worker(s), {elapsed:.0f} s, "
        f"{args.users:,} users x {args.items:,} items",
        ["requests", "req/s", "errors", "samples", "RSS after warm-up MiB", "RSS at end MiB",
         "RSS growth", "anon growth", f"growth < {GROWTH_TARGET:.0%}"],
        [[requests, round(requests / elapsed, 1), errors, len(samples), round(rss[0], 1),
          round(rss[1], 1), f"{rss[2]:+.2%}", f"{anon[2]:+.2%}",
          "yes" if rss[2] < GROWTH_TARGET else "no"]],
    )  # fmt: skip
    summary.notes += [
        f"growth = (last sample - first sample at or after {args.warm_up:.0f} s) / that sample, "
        "of master + workers; anon = RSS minus file-backed pages (the memory-mapped model)",
        f"load average before / after: {load_before} / {load_average()}"
        + ("; gunicorn replaced a worker during the run" if restarted else ""),
    ]
    mix = Table("Requests by type", ["type", "requests", "errors", "p50 ms", "p99 ms"])
    for name, s in stats.items():
        ms = np.array(s["latencies"] or [np.nan]) * 1000
        p50, p99 = np.percentile(ms, [50, 99])
        mix.rows.append([name, s["requests"], s["errors"], f"{p50:.1f}", f"{p99:.1f}"])
    results = {
        "seconds": elapsed,
        "requests": requests,
        "requests_per_second": requests / elapsed,
        "errors": errors,
        "error_examples": examples,
        "rss_mib": {"after_warm_up": rss[0], "end": rss[1], "growth": rss[2]},
        "anon_mib": {"after_warm_up": anon[0], "end": anon[1], "growth": anon[2]},
        "growth_target": GROWTH_TARGET,
        "worker_replaced": restarted,
        "by_type": {
            k: {"requests": s["requests"], "errors": s["errors"]} for k, s in stats.items()
        },
        "samples": samples,
        "load": load_average(),
    }
    notes = ["clients and server share this machine's cores; req/s is a floor"]
    json_path, md_path = write_results(header, [summary, mix], results, notes, args.out_dir)
    print(summary.to_markdown() + "\n" + mix.to_markdown())
    print(f"results: {json_path} and {md_path.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
