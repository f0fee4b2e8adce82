"""Start-up: importing the runtime, the preflight, a cold server, the runtime's share of a Trainer.

- ``import trainer_runtime`` in fresh interpreters (and which heavy modules it pulls in).
- One worker process is a Trainer as the image runs it: interpreter start, TF
  import, data, then ``run_tracked`` around a run_fn that builds and fits the
  model, per-epoch logging (the default), against a warm server. The runtime's
  share is its time (importing it, everything in ``run_tracked`` outside the
  run_fn, and its callback) over that process's wall time until the run ended.
- The same process then times the preflight (call to ``train`` entered) against
  the warm server, and starts a run while a fresh server on a new port is still
  coming up: from the moment that server answers /health to the first training step.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .spawn import REPO, run_worker, worker_env

HEAVY = ("tensorflow", "mlflow", "google.cloud", "google.auth", "requests", "pydantic")

_IMPORT_PROBE = """
import importlib, json, sys, time
if {path!r}:
    sys.path.insert(0, {path!r})
before = set(sys.modules)
started = time.perf_counter()
module = importlib.import_module({module!r})
took = time.perf_counter() - started
added = set(sys.modules) - before
print(json.dumps({{"s": took, "modules": len(added), "file": module.__file__,
                   "heavy": sorted(h for h in {heavy!r} if any(m == h or m.startswith(h + ".") for m in added))}}))
"""


def import_times(runtime_path: str | None, repeats: int, module: str = "trainer_runtime") -> dict[str, Any]:
    """Import ``module`` in ``repeats`` fresh interpreters (after one discarded)."""
    runs = []
    for _ in range(repeats + 1):
        code = _IMPORT_PROBE.format(path=runtime_path or "", heavy=HEAVY, module=module)
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=worker_env(), capture_output=True,
                             text=True, timeout=120, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    runs = runs[1:]
    return {"module": module, "seconds": [r["s"] for r in runs], "heavy_modules": runs[-1]["heavy"],
            "modules_added": runs[-1]["modules"], "file": runs[-1]["file"]}


def run_startup(workdir: Path, base_task: dict[str, Any], uri: str, repeats: int, log=print) -> dict[str, Any]:
    from tests.harness.procs import free_port, http_status
    from tests.harness.servers import start_mlflow

    result: dict[str, Any] = {"import": import_times(base_task.get("runtime_path"), repeats),
                              # what the image's entrypoint imports before it parses its arguments
                              "import_cli": import_times(base_task.get("runtime_path"), repeats,
                                                         "trainer_runtime.commands.cli")}
    cold: dict[str, Any] = {"port": free_port()}
    servers: list = []

    def start_cold_server() -> None:
        cold["launched_wall"] = time.time()
        try:
            servers.append(start_mlflow(workdir / "mlflow-cold", port=cold["port"])[0])
        except Exception as exc:  # reported to the worker's "cold-done" reply
            cold["error"] = repr(exc)

    def on_event(event: dict) -> dict | None:
        if event["event"] == "cold-start":
            log("  cold server starting while the run's preflight waits for it")
            threading.Thread(target=start_cold_server, name="bench-cold-server", daemon=True).start()
            url = f"http://127.0.0.1:{cold['port']}/health"
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and "error" not in cold:
                if http_status(url, timeout=1.0) == 200:
                    cold["healthy_wall"] = time.time()
                    break
                time.sleep(0.02)
            return None
        if event["event"] == "cold-done":
            return {"healthy_wall": cold.get("healthy_wall"), "launched_wall": cold.get("launched_wall"),
                    "error": cold.get("error")}
        return None

    task = {**base_task, "kind": "startup", "uri": uri, "cold_uri": f"http://127.0.0.1:{cold['port']}",
            "preflight_repeats": 10 if repeats > 3 else 5}
    try:
        result.update(run_worker(task, workdir, "startup", on_event))
    finally:
        for server in servers:
            server.stop()
    return result


# --- worker side -----------------------------------------------------------------

def startup_in_worker(task: dict[str, Any], workdir: Path, channel: Any) -> dict[str, Any]:
    import psutil

    exec_wall = psutil.Process().create_time()
    import tf_keras

    from .drivers import spool_in
    from .probes import HookTimer, timeline_callback
    from .workload import Workload, dataset, new_model

    workload = Workload(**{k: task["workload"][k] for k in ("rows", "batch", "epochs")})
    data = dataset(workload)
    started = time.perf_counter()
    from trainer_runtime.core.config import load_config
    from trainer_runtime.run.deps import Deps
    from trainer_runtime.run.session import run_tracked
    from trainer_runtime.training.wrap import train_with_callback
    import_s = time.perf_counter() - started
    hooks = HookTimer()
    hooks.install(tf_keras.callbacks)

    def tracked(uri: str, name: str, user_fn) -> dict[str, float]:
        env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": "bench-startup",
               "TRAINER_RUNTIME_RUN_NAME": name,
               "TRAINER_RUNTIME_STATUS_DIR": str(workdir / "status" / f"{name}-{time.time_ns()}")}
        spool_in(env, workdir)
        marks = {"call": time.perf_counter(), "call_wall": time.time()}

        def train(ctx):
            marks["train"], marks["train_wall"] = time.perf_counter(), time.time()
            return train_with_callback(ctx, user_fn, marks)

        run_tracked(lambda: load_config(env), train, deps=Deps(env=env))
        marks["return"], marks["return_wall"] = time.perf_counter(), time.time()
        return marks

    def fit_model(epochs: int, callbacks=()):
        def user_fn(marks):  # what a run_fn does: build the model, fit it
            marks["user_start"], marks["user_start_wall"] = time.perf_counter(), time.time()
            new_model().fit(data, epochs=epochs, verbose=0, callbacks=list(callbacks))
            marks["user_end"] = time.perf_counter()
        return user_fn

    # 1. A Trainer: this process, from its start, through one tracked run.
    hooks.reset()
    trainer = tracked(task["uri"], "trainer", fit_model(workload.epochs))
    runtime_s = import_s + (trainer["return"] - trainer["call"]) - (trainer["user_end"] - trainer["user_start"]) \
        + hooks.seconds
    wall = trainer["return_wall"] - exec_wall
    share = {"trainer_wall_s": wall, "runtime_s": runtime_s, "share": runtime_s / wall,
             "runtime_import_s": import_s, "preflight_s": trainer["train"] - trainer["call"],
             "callback_s": hooks.seconds, "end_of_run_s": trainer["return"] - trainer["user_end"],
             "before_run_s": trainer["call_wall"] - exec_wall}

    # 2. The preflight against the warm server (run_tracked called -> train entered), and an empty run's close.
    def noop(marks):
        marks["user_start"] = marks["user_end"] = time.perf_counter()

    preflight = [tracked(task["uri"], f"preflight-{i}", noop) for i in range(task["preflight_repeats"])]

    # 3. A cold server: the run starts first; the parent starts the server on the port it names.
    timeline = timeline_callback(tf_keras.callbacks.Callback)
    channel.send(event="cold-start")
    cold = tracked(task["cold_uri"], "cold-start", fit_model(1, [timeline]))
    channel.send(event="cold-done")
    server = channel.wait()
    healthy = server.get("healthy_wall")
    cold_result = {"server_error": server.get("error"), "server_start_s": None}
    if healthy:
        cold_result.update(
            server_start_s=healthy - server["launched_wall"],
            healthy_to_train_s=cold["train_wall"] - healthy,
            healthy_to_first_step_begin_s=timeline.first_begin - healthy,
            healthy_to_first_step_end_s=timeline.first_end - healthy,
            model_build_to_first_step_s=timeline.first_begin - cold["user_start_wall"])
    return {"share": share,
            "preflight": {"seconds": [m["train"] - m["call"] for m in preflight],
                          "close_s": [m["return"] - m["user_end"] for m in preflight],
                          "median_s": statistics.median(m["train"] - m["call"] for m in preflight)},
            "cold": cold_result}
