"""Run one configuration's fit in this (worker) process and measure it.

Each family is driven the way its user would drive it:

- ``mlflow``: ``mlflow.start_run`` + ``fit(callbacks=[MlflowCallback(...)])`` +
  ``mlflow.end_run``. No shim: MlflowCallback subclasses ``tensorflow.keras``'s
  Callback, which is tf-keras under ``TF_USE_LEGACY_KERAS=1``, and it logs through
  the fluent API, so it needs the active run. Its ``on_train_begin`` model summary
  fails on a subclassed model that is not built yet; MLflow's ExceptionSafeClass
  logs a warning and training goes on (only ``model_summary.txt`` is missing).
  The runtime's Keras hook is not installed for these fits.
- ``runtime``: the public entry points, as a standalone job uses them:
  ``session.run_tracked(load_config, train)`` where ``train`` calls
  ``training.wrap.train_with_callback(ctx, fit, every_n_steps=...)``.
- ``sync``: ``MlflowClient.create_run`` + a callback calling ``log_metric`` per
  metric per step + ``set_terminated``.

The model is built before the clock starts; the run's set-up (start_run /
preflight / create_run), the fit and the end of the run (end_run / close) are
timed separately.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import configs
from .configs import Config
from .probes import HookTimer, ThreadCpu, process_cpu, tree_cpu
from .workload import Workload, new_model

EXPERIMENT = "bench"


@dataclass
class Probes:
    hooks: HookTimer
    threads: ThreadCpu
    server_pid: int | None


def install_probes(server_pid: int | None) -> Probes:
    import tf_keras

    hooks, threads = HookTimer(), ThreadCpu()
    hooks.install(tf_keras.callbacks)
    threads.install()
    return Probes(hooks, threads, server_pid)


def run_config(config: Config, workload: Workload, data: Any, uri: str, probes: Probes, workdir: Path,
               extra_callbacks: tuple = ()) -> dict[str, Any]:
    """Fit once under ``config``; returns timings, CPU, hook time and the points the server holds."""
    import tf_keras

    model = new_model()
    callbacks = list(extra_callbacks)
    marks: dict[str, Any] = {}

    def fit() -> Any:
        marks["fit_start"] = time.perf_counter()
        try:
            history = model.fit(data, epochs=workload.epochs, verbose=0, callbacks=callbacks)
            marks["metrics_per_log"] = len(history.history)
            return history
        finally:
            marks["fit_end"] = time.perf_counter()
            marks["fit_end_wall"] = time.time()

    runner = _RUNNERS[config.family]
    probes.hooks.reset()
    cpu, background, main = process_cpu(), probes.threads.seconds(), time.thread_time()
    server = tree_cpu(probes.server_pid)
    marks["start"] = time.perf_counter()
    error = None
    try:
        run_id = runner(config, uri, fit, callbacks, tf_keras.callbacks.Callback, workdir, marks)
    except Exception as exc:  # recorded; the other configurations still run
        run_id, error = marks.get("run_id"), f"{type(exc).__name__}: {str(exc)[:300]}"
    marks["end"] = time.perf_counter()
    server_after = tree_cpu(probes.server_pid)
    result: dict[str, Any] = {
        "config": config.name,
        "run_total_s": marks["end"] - marks["start"],
        "setup_s": marks.get("fit_start", marks["end"]) - marks["start"],
        "fit_s": marks.get("fit_end", marks["end"]) - marks.get("fit_start", marks["start"]),
        "end_of_run_s": marks["end"] - marks.get("fit_end", marks["end"]),
        "fit_end_wall": marks.get("fit_end_wall"),
        "client_cpu_s": process_cpu() - cpu,
        "background_cpu_s": probes.threads.seconds() - background,
        "main_thread_cpu_s": time.thread_time() - main,
        "server_cpu_s": None if server is None or server_after is None else server_after - server,
        "steps": workload.steps,
        "metrics_per_log": marks.get("metrics_per_log"),
        "run_id": run_id,
        "error": error,
        **probes.hooks.result(workload.steps),
    }
    if "runtime_status" in marks:
        result["runtime_status"] = marks["runtime_status"]
    if "pending_at_fit_end" in marks:
        result["pending_at_fit_end"] = marks["pending_at_fit_end"]
    fluent = marks.get("fluent")
    if fluent is not None and fluent.calls:
        result["fluent_calls"] = fluent.calls
        result["fluent_us_per_call"] = 1e6 * fluent.seconds / fluent.calls
    return result


def count_sink_points(uri: str, run_id: str | None) -> dict[str, int]:
    """What the null sink counted for the run (``bench/sink_server.py``): distinct (key, step) of the fit's
    metrics and raw rows, as :func:`count_points` reads them from a real server."""
    import urllib.request

    if not run_id:
        return {"points_present": 0, "points_raw": 0}
    with urllib.request.urlopen(f"{uri}/__sink__", timeout=10) as reply:
        found = json.loads(reply.read())["points"].get(run_id) or {}
    return {"points_present": found.get("distinct_fit", 0), "points_raw": found.get("raw", 0)}


def count_points(uri: str, run_id: str | None) -> dict[str, int]:
    """Metric points the server holds for the run: distinct (key, step) and raw rows."""
    if not run_id:
        return {"points_present": 0, "points_raw": 0}
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    distinct, raw = set(), 0
    for key in client.get_run(run_id).data.metrics:
        if key.startswith("system/"):  # the runtime's system metrics: not the fit's points
            continue
        history = client.get_metric_history(run_id, key)
        raw += len(history)
        distinct.update((key, m.step) for m in history)
    return {"points_present": len(distinct), "points_raw": raw}


def _none(config, uri, fit, callbacks, base, workdir, marks):
    fit()
    return None


def _ideal(config, uri, fit, callbacks, base, workdir, marks):
    callbacks.append(configs.ideal_callback(base, per_step=bool(config.every_n_steps)))
    fit()
    return None


def _in_mlflow_run(config, uri, marks, fit) -> str:
    """``fit()`` inside a plain MLflow run: ``start_run``, then ``end_run`` FINISHED (FAILED if it raised)."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(EXPERIMENT)
    run = mlflow.start_run(run_name=config.name)
    marks["run_id"] = run.info.run_id
    status = "FAILED"
    try:
        fit()
        status = "FINISHED"
    finally:
        mlflow.end_run(status)  # with synchronous=False calls: waits for MLflow's async queue to drain
    return run.info.run_id


def _mlflow(config, uri, fit, callbacks, base, workdir, marks):
    """MLflow's own Keras callback, ``MlflowCallback``, per epoch or every n steps."""
    from mlflow.tensorflow import MlflowCallback

    def with_callback():
        if config.every_n_steps:
            callbacks.append(MlflowCallback(log_every_epoch=False, log_every_n_steps=config.every_n_steps))
        else:
            callbacks.append(MlflowCallback())
        fit()

    return _in_mlflow_run(config, uri, marks, with_callback)


def _mlflow_fluent(config, uri, fit, callbacks, base, workdir, marks, synchronous=None):
    """A custom loop on MLflow's fluent API: ``start_run``, ``log_metric`` per metric per step, ``end_run``."""
    def with_fluent_calls():
        marks["fluent"] = configs.fluent_callback(base, synchronous)
        callbacks.append(marks["fluent"])
        fit()

    return _in_mlflow_run(config, uri, marks, with_fluent_calls)


def _mlflow_fluent_async(config, uri, fit, callbacks, base, workdir, marks):
    return _mlflow_fluent(config, uri, fit, callbacks, base, workdir, marks, synchronous=False)


def _runtime_fluent(config, uri, fit, callbacks, base, workdir, marks):
    """The same loop inside a tracked run: the runtime routes ``mlflow.log_metric`` through its spool."""
    marks["fluent"] = configs.fluent_callback(base, None)
    callbacks.append(marks["fluent"])
    return _runtime(config, uri, fit, callbacks, base, workdir, marks)


def _runtime(config, uri, fit, callbacks, base, workdir, marks):
    from trainer_runtime.core.config import load_config
    from trainer_runtime.run.deps import Deps
    from trainer_runtime.run.session import run_tracked
    from trainer_runtime.training.wrap import train_with_callback

    status_dir = workdir / "status" / f"{config.name}-{time.time_ns()}"
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": EXPERIMENT,
           "TRAINER_RUNTIME_RUN_NAME": config.name, "TRAINER_RUNTIME_STATUS_DIR": str(status_dir),
           # the fluent row's steps come from the loop's own calls; the runtime's callback logs epochs
           "TRAINER_RUNTIME_LOG_EVERY_N_STEPS": str(0 if config.family == "runtime-fluent" else config.every_n_steps)}

    spool_in(env, workdir)

    def train(ctx):
        marks["run_id"] = ctx.run_id
        result = train_with_callback(ctx, fit, every_n_steps=ctx.log_every_n_steps)
        # what the close still has to send: after an outage, the end of run is this over the server's pace
        marks["pending_at_fit_end"] = ctx.logger.progress()["points_pending"]
        return result

    try:
        run_tracked(lambda: load_config(env), train, deps=Deps(env=env))
    finally:
        marks["runtime_status"] = _runtime_report(status_dir)
    return marks.get("run_id")


def spool_in(env: dict[str, str], workdir: Path) -> None:
    """Keep the runtime's spool (runtimes that have one) in the bench's work dir, not $TMPDIR."""
    from trainer_runtime.core import envvars

    if hasattr(envvars, "SPOOL_DIR"):
        env[envvars.SPOOL_DIR] = str(workdir / "spool" / f"{env['TRAINER_RUNTIME_RUN_NAME']}-{time.time_ns()}")


def _runtime_report(status_dir: Path) -> dict[str, Any]:
    """The runtime's own account of the run (its status file), beside what the bench measured."""
    try:
        status = json.loads((status_dir / "mlflow_status.json").read_text())
    except (OSError, ValueError) as exc:
        return {"error": f"no status file: {exc}"}
    return {key: status.get(key) for key in ("stage", "exit_code", "logging", "callback")}


def _sync(config, uri, fit, callbacks, base, workdir, marks):
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
    run_id = client.create_run(experiment_id, run_name=config.name).info.run_id
    marks["run_id"] = run_id
    status = "FAILED"
    try:
        callbacks.append(configs.sync_callback(base, client, run_id))
        fit()
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status)
    return run_id


_RUNNERS: dict[str, Callable[..., str | None]] = {
    "none": _none, "ideal": _ideal, "mlflow": _mlflow, "runtime": _runtime, "sync": _sync,
    "mlflow-fluent": _mlflow_fluent, "mlflow-fluent-async": _mlflow_fluent_async,
    "runtime-fluent": _runtime_fluent}
