"""Probes of a running ``mfrec serve`` (a :class:`mfrec.local_server.LocalServer`) shared by the
server tests: how fast ``/ping`` answers, and which process holds a connection."""

from __future__ import annotations

import time

import psutil


def ping_waits(server, times: int = 6, pause: float = 0.1) -> list[float]:
    """Seconds each of ``times`` ``/ping`` requests took (each must answer 200 within 2 s),
    ``pause`` seconds apart."""
    waits = []
    for _ in range(times):
        started = time.perf_counter()
        assert server.get("/ping", timeout=2)[0] == 200
        waits.append(time.perf_counter() - started)
        time.sleep(pause)
    return waits


def accepted_by_a_worker(server, client_port: int) -> bool:
    """True once a worker process holds the server side of the client's connection."""
    for pid in server.worker_pids():
        try:
            connections = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        if any(c.raddr and c.raddr.port == client_port for c in connections):
            return True
    return False
