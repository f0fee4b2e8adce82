"""The user-code rows' trainer: a custom loop (no Keras fit) that logs through MLflow's own API.

``loop`` runs under the runtime (``trainer-runtime run tests.faults.user_loop:loop``, or as a TFX
run_fn through ``run_fn``); ``plain`` is the same code under plain MLflow (``mlflow.start_run``, no
runtime): the comparison column. Driven by the runner's environment:

``FAULT_EPOCHS``, ``FAULT_EPOCH_SECONDS``
    steps, and the pace between them.
``FAULT_MARKS``
    one JSON line per step in the runner's format (``{"epoch": step, "keys": [...], "t"}``), so
    the runner counts the points it expects; then the MLflow calls' timings (longest, total),
    the artifacts logged and the peak RSS growth.
``FAULT_USER``
    what the loop logs besides ``log_params`` + ``log_metric("loss")`` every step + ``log_artifact``
    + ``log_dict`` at the end: ``autolog`` (a tf-keras fit per 10 steps with ``mlflow.autolog()``
    and a hand-written callback logging its epochs through ``mlflow.log_metrics``), ``async``
    (``synchronous=False`` calls), ``burst`` (20 more points a step, RSS sampled).
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

from bench.memory import rss_mb as _rss_mb
from tests.faults.trainer import _mark

ARTIFACTS = ("reports/notes.txt", "config/loop.json")
#: what a call may cost without counting as a stall: MLflow's own fluent-API work (~30 us unloaded,
#: a few hundred us with the fault suite's 8 trainers on 2 cores); beyond it, the call waited
STALL_FLOOR = 0.001


class _Timed:
    """Times every MLflow call the loop makes on its own thread."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, fn, *args, **kwargs):
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.calls.append(time.perf_counter() - started)


def _keras_epochs(mlflow, timed: _Timed, epoch: int) -> list[str]:
    """One epoch of a tiny tf-keras fit with autolog on and a callback logging through MLflow."""
    import numpy as np
    import tf_keras as keras

    class LogEpochs(keras.callbacks.Callback):
        def on_epoch_end(self, e, logs=None):
            timed(mlflow.log_metrics, {f"fit_{k}": float(v) for k, v in (logs or {}).items()}, step=epoch)

    rng = np.random.default_rng(epoch)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = (x.sum(axis=1, keepdims=True) > 0).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[LogEpochs()])
    return ["fit_loss"]


def loop() -> None:
    import mlflow

    steps = int(os.environ.get("FAULT_EPOCHS", "100"))
    pace = float(os.environ.get("FAULT_EPOCH_SECONDS", "0.1"))
    user = os.environ.get("FAULT_USER", "")
    timed = _Timed()
    rss_before, rss_peak = _rss_mb(), 0.0
    if user == "autolog":
        mlflow.autolog(log_models=False, log_datasets=False, silent=True)
    timed(mlflow.log_params, {"lr": 0.1, "batch_size": 32, "user": user or "loop"})
    burst = [f"b{i:02d}" for i in range(20)] if user == "burst" else []
    for step in range(steps):
        timed(mlflow.log_metric, "user_loss", 1.0 / (step + 1), step=step,
              synchronous=False if user == "async" else None)
        keys = ["user_loss"]
        if burst:
            timed(mlflow.log_metrics, {k: float(step) for k in burst}, step=step)
            keys += burst
            if step % 50 == 0:
                rss_peak = max(rss_peak, _rss_mb())
        if user == "autolog" and step % 10 == 0:
            keys += _keras_epochs(mlflow, timed, step)
        _mark({"epoch": step, "keys": keys, "t": time.time()})
        time.sleep(pace)
    folder = tempfile.mkdtemp()
    notes = os.path.join(folder, "notes.txt")
    with open(notes, "w", encoding="utf-8") as fh:
        fh.write("trained " * 1000)
    timed(mlflow.log_artifact, notes, "reports")
    os.remove(notes)  # the runtime copied it at the call
    timed(mlflow.log_dict, {"steps": steps, "pace": pace}, "config/loop.json")
    if user == "async":
        timed(mlflow.log_metric, "final_loss", 1.0 / steps, synchronous=False)
    rss_peak = max(rss_peak, _rss_mb())
    _mark({"fit_returned": time.time(), "calls": len(timed.calls), "longest": max(timed.calls),
           "total": sum(timed.calls), "stall": sum(max(0.0, d - STALL_FLOOR) for d in timed.calls), "artifacts": list(ARTIFACTS), "rss_growth_mb": rss_peak - rss_before})


def plain() -> None:
    """The same loop under plain MLflow: no runtime, MLflow's client and its own retries."""
    import mlflow

    mlflow.set_experiment(os.environ["MLFLOW_EXPERIMENT_NAME"])
    with mlflow.start_run() as run:
        _mark({"run_id": run.info.run_id})
        loop()


def run_fn(fn_args) -> None:
    """The loop as a TFX run_fn (the TrackedExecutor rows); saves a model as TFX requires."""
    import tf_keras as keras

    loop()
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.save(fn_args.serving_model_dir, save_format="tf")


if __name__ == "__main__":
    {"plain": plain, "loop": loop}[sys.argv[1]]()
