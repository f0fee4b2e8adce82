"""Server sizing: how many metric points per second one `mlflow server` (SQLite, 1 worker) stores.

A client sends ``runs/log-batch`` requests of 100 and of 1,000 points (the
runtime's batches are up to 1,000) as fast as the server answers, from 1 and
from 4 concurrent senders, each to its own run; measured: points per second
(wall), the server's CPU per point (its process tree), and the round trip per
request. The requests are plain HTTP from a reused connection, so the figures
are the server's, not a client library's.
"""
from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .probes import tree_cpu

BATCHES = (100, 1000)
SENDERS = (1, 4)


def _post(conn: http.client.HTTPConnection, path: str, body: dict[str, Any]) -> dict[str, Any]:
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    reply = conn.getresponse()
    data = reply.read()
    if reply.status != 200:
        raise RuntimeError(f"{path}: HTTP {reply.status}: {data[:200]!r}")
    return json.loads(data or b"{}")


def _sender(url: str, experiment_id: str, batch: int, points: int, out: list) -> None:
    split = urlsplit(url)
    conn = http.client.HTTPConnection(split.hostname, split.port, timeout=300)
    run_id = _post(conn, "/api/2.0/mlflow/runs/create",
                   {"experiment_id": experiment_id, "start_time": int(time.time() * 1000)})["run"]["info"]["run_id"]
    now = int(time.time() * 1000)
    sent, trips = 0, []
    while sent < points:
        metrics = [{"key": f"m{i % 8}", "value": float(i), "timestamp": now, "step": (sent + i) // 8}
                   for i in range(batch)]
        started = time.perf_counter()
        _post(conn, "/api/2.0/mlflow/runs/log-batch", {"run_id": run_id, "metrics": metrics})
        trips.append(time.perf_counter() - started)
        sent += batch
    conn.close()
    out.append({"sent": sent, "trips": trips})


def measure(url: str, server_pid: int, experiment_id: str, batch: int, senders: int, points: int) -> dict:
    results: list[dict] = []
    threads = [threading.Thread(target=_sender, args=(url, experiment_id, batch, points // senders, results))
               for _ in range(senders)]
    cpu = tree_cpu(server_pid)
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    cpu_after = tree_cpu(server_pid)
    sent = sum(r["sent"] for r in results)
    trips = sorted(t for r in results for t in r["trips"])
    if len(results) != senders:
        raise RuntimeError(f"{senders - len(results)} sender(s) failed (see the server log)")
    return {"batch": batch, "senders": senders, "points": sent, "wall_s": wall,
            "points_per_s": sent / wall, "server_cpu_s": None if cpu is None or cpu_after is None else cpu_after - cpu,
            "server_us_per_point": None if cpu is None or cpu_after is None else 1e6 * (cpu_after - cpu) / sent,
            "request_ms_median": 1000 * trips[len(trips) // 2], "request_ms_max": 1000 * trips[-1]}


def size_server(workdir: Path, quick: bool) -> dict[str, Any]:
    from tests.harness.servers import start_mlflow

    points = 8_000 if quick else 40_000
    server, url = start_mlflow(workdir)
    try:
        split = urlsplit(url)
        conn = http.client.HTTPConnection(split.hostname, split.port, timeout=60)
        experiment_id = _post(conn, "/api/2.0/mlflow/experiments/create",
                              {"name": f"sizing-{uuid.uuid4().hex[:8]}"})["experiment_id"]
        conn.close()
        measure(url, server.pid, experiment_id, 100, 1, 2_000)  # warm-up: first queries, caches; discarded
        rows = []
        for batch in BATCHES:
            for senders in SENDERS:
                rows.append(measure(url, server.pid, experiment_id, batch, senders, points))
                print(f"  log-batch x{batch}, {senders} sender(s): {rows[-1]['points_per_s']:,.0f} points/s, "
                      f"server {rows[-1]['server_us_per_point']:.0f} µs CPU/point", flush=True)
    finally:
        server.stop()
    return {"points_per_row": points, "rows": rows, "backend": "SQLite, 1 worker (`mlflow server --workers 1`)"}
