"""Outages: the server is killed after epoch 2 and restarted later, or hangs (SIGSTOP) and resumes.

The worker announces the end of epoch 2; the parent then, on the same MLflow
server (same port, same SQLite file), either SIGKILLs its process group and
starts it again ``delay`` seconds later, or SIGSTOPs it and SIGCONTs it after
``delay`` seconds. Training goes on meanwhile and is long enough to still be
running when the server is back, so the end of the run measures what an outage
that healed mid-fit leaves behind.
"""
from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .configs import OUTAGE_CONFIGS
from .spawn import run_worker


@dataclass(frozen=True)
class Scenario:
    name: str        # kill | stop
    delay: float     # seconds from the fault to the restart / SIGCONT
    allowance: float  # extra fit time beyond the delay (a restart takes a few seconds)

    @property
    def key(self) -> str:
        return f"{self.name}-{self.delay:g}s"


FULL_SCENARIOS = (Scenario("kill", 10, 20), Scenario("kill", 60, 20), Scenario("stop", 10, 8))
QUICK_SCENARIOS = (Scenario("kill", 2, 12), Scenario("stop", 3, 3))
# MLflow every step is left to the full run: its backlog after an outage takes minutes to drain.
QUICK_CONFIGS = ("mlflow-epoch", "runtime-epoch", "runtime-step1")


class OutageServer:
    """An MLflow server that can be killed and restarted in place, or stopped and resumed."""

    def __init__(self, workdir: Path) -> None:
        from tests.harness.procs import free_port
        from tests.harness.servers import start_mlflow

        self._start = start_mlflow
        self.workdir, self.port = workdir, free_port()
        self.proc, self.uri = start_mlflow(workdir, port=self.port)
        self.restarts: list[float] = []

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.proc.wait()

    def restart(self) -> None:
        started = time.monotonic()
        self.proc, _ = self._start(self.workdir, port=self.port)
        self.restarts.append(time.monotonic() - started)

    def signal(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)

    def wait_healthy(self, timeout: float = 120) -> float:
        from tests.harness.procs import http_status

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if http_status(f"{self.uri}/health", timeout=1.0) == 200:
                return time.time()
            time.sleep(0.02)
        raise RuntimeError(f"MLflow server {self.uri} not healthy {timeout:.0f}s after the outage")

    def stop(self) -> None:
        self.signal(signal.SIGCONT)  # a stopped group ignores SIGTERM until resumed
        self.proc.stop()


def plan(quick: bool, rng: random.Random) -> list[dict[str, Any]]:
    scenarios = QUICK_SCENARIOS if quick else FULL_SCENARIOS
    names = QUICK_CONFIGS if quick else OUTAGE_CONFIGS
    items = [{"scenario": s.name, "delay": s.delay, "allowance": s.allowance, "key": s.key, "config": c}
             for s in scenarios for c in names]
    rng.shuffle(items)
    return [{**item, "id": i} for i, item in enumerate(items)]


def run_outages(workdir: Path, base_task: dict[str, Any], quick: bool, rng: random.Random,
                log=print) -> dict[str, Any]:
    server = OutageServer(workdir / "mlflow-outage")
    items = plan(quick, rng)
    faults: dict[int, dict[str, float]] = {}

    def on_event(event: dict) -> dict | None:
        if event["event"] == "fault":
            record = faults.setdefault(event["id"], {"fault_wall": time.time()})
            if event["scenario"] == "kill":
                server.kill()
                log(f"  outage {event['id']}: server killed; restart in {event['delay']:g}s")
                time.sleep(event["delay"])
                record["restart_wall"] = time.time()
                server.restart()
            else:
                server.signal(signal.SIGSTOP)
                log(f"  outage {event['id']}: server stopped (SIGSTOP) for {event['delay']:g}s")
                time.sleep(event["delay"])
                record["restart_wall"] = time.time()
                server.signal(signal.SIGCONT)
            record["healthy_wall"] = server.wait_healthy()
            return None
        if event["event"] == "done":
            server.wait_healthy()
            return {"ok": True}
        return None

    try:
        task = {**base_task, "kind": "outage", "uri": server.uri, "plan": items}
        result = run_worker(task, workdir, "outage", on_event, timeout=3 * 3600)
    finally:
        server.stop()
    for fit in result["fits"]:
        record = faults.get(fit["id"], {})
        fit.update(record)
        if "healthy_wall" in record:
            fit["outage_s"] = record["healthy_wall"] - record["fault_wall"]
            fit["healed_before_fit_end"] = bool(fit.get("fit_end_wall") and
                                                record["healthy_wall"] < fit["fit_end_wall"])
    return {"plan": items, "fits": result["fits"], "server_restart_s": server.restarts}
