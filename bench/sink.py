"""The ``sink`` section of `make bench`: what each client costs the training with the server taken out.

Every configuration of ``configs.SINK_CONFIGS`` fits against the null sink
(``bench/sink_server.py``, its own process), in sets as the overhead section does
(a fresh worker per set, each configuration once in a random order, a discarded
warm-up per family), and then one MLflow server is sized (``sizing.py``): the
figures that say what the runtime costs and what the server must take.
"""
from __future__ import annotations

import json
import random
import sys
import urllib.request
from pathlib import Path
from typing import Any

from . import machine
from .configs import SINK_CONFIGS
from .spawn import REPO, run_worker


def start_sink(workdir: Path):
    """The null sink, started and answering /health; returns (process, url)."""
    from tests.harness.procs import ManagedProcess, free_port

    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = ManagedProcess("null-sink", [sys.executable, "-m", "bench.sink_server", "--port", str(port)],
                          workdir / "sink.log", cwd=str(REPO))
    url = f"http://127.0.0.1:{port}"
    return proc.start(f"{url}/health", 30), url


def sink_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/__sink__", timeout=10) as reply:
        return json.loads(reply.read())


def run_sink(workdir: Path, base_task: dict, sets: int, rng: random.Random, quick: bool) -> dict[str, Any]:
    from .sizing import size_server

    sink, url = start_sink(workdir / "sink")
    found: dict[str, Any] = {"sets": []}
    try:
        for number in range(sets):
            order = [c.name for c in SINK_CONFIGS]
            rng.shuffle(order)
            print(f"sink set {number + 1}/{sets} (load {machine.load_average()[0]}): {' '.join(order)}", flush=True)
            one = run_worker({**base_task, "kind": "sink", "uri": url, "server_pid": sink.pid, "order": order},
                             workdir / f"sink-set{number}", f"sink-set{number}")
            found["sets"].append({"order": order, "fits": one["fits"],
                                  "load_average_after": machine.load_average()})
        stats = sink_stats(url)
        found["sink"] = {"requests": stats["requests"], "unknown": stats["unknown"], "bytes_in": stats["bytes_in"]}
    finally:
        sink.stop()
    print("sizing: one mlflow server (SQLite, 1 worker) ingesting log-batch", flush=True)
    found["sizing"] = size_server(workdir / "sizing", quick)
    return found
