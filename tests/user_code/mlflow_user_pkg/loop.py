"""User code that logs through MLflow's own API, as real run_fns do: a custom loop (no Keras fit).

Driven by environment variables:
``LOOP_STEPS`` (100), ``LOOP_PACE`` (seconds between steps, 0.05), ``LOOP_MARKS`` (a file: one JSON
line per step reached, ``{"step": i}``, and the timings at the end), ``LOOP_HOLD`` (a file: the
loop waits at step ``LOOP_HOLD_AT`` until it disappears, so a test can act mid-training).
"""
import json
import os
import tempfile
import time

import mlflow


def _mark(entry):
    path = os.environ.get("LOOP_MARKS")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")


def custom_loop():
    """log_params once, log_metric every step, then log_artifact (deleted right after) and log_dict."""
    steps = int(os.environ.get("LOOP_STEPS", "100"))
    pace = float(os.environ.get("LOOP_PACE", "0.05"))
    hold, hold_at = os.environ.get("LOOP_HOLD"), int(os.environ.get("LOOP_HOLD_AT", "-1"))
    calls = []
    started = time.perf_counter()
    mlflow.log_params({"lr": 0.1, "batch_size": 32})
    calls.append(time.perf_counter() - started)
    for step in range(steps):
        if step == hold_at and hold:
            _mark({"held": step})
            while os.path.exists(hold):
                time.sleep(0.05)
        started = time.perf_counter()
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        calls.append(time.perf_counter() - started)
        _mark({"step": step})
        time.sleep(pace)
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "notes.txt")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("trained " * 100)
    started = time.perf_counter()
    mlflow.log_artifact(path, "reports")
    os.remove(path)  # the runtime copied it at the call
    mlflow.log_dict({"steps": steps, "pace": pace}, "config/loop.json")
    mlflow.log_metric("final_loss", 1.0 / steps, synchronous=False)
    calls.append(time.perf_counter() - started)
    _mark({"calls": len(calls), "longest": max(calls), "total": sum(calls)})


def server_would_reject():
    """Values MLflow's client sends and its server refuses (MLflow 3 validates them there): a
    string as a metric, a name the server does not accept, a param changed after it was logged."""
    mlflow.log_metric("loss", "not a number")
    mlflow.log_metric("bad name@!", 1.0)
    mlflow.log_param("lr", 0.1)
    mlflow.log_param("lr", 0.2)
    mlflow.log_metric("ok", 1.0)


def reads_in_outage():
    """Reads the user makes while the server is down: a typed error, quickly."""
    from mlflow.exceptions import MlflowException

    run_id = mlflow.active_run().info.run_id if mlflow.active_run() else os.environ["MLFLOW_RUN_ID"]
    mlflow.log_metric("before", 1.0)
    hold = os.environ["LOOP_HOLD"]
    _mark({"held": 0})
    while os.path.exists(hold):
        time.sleep(0.05)
    outcomes = {}
    for name, read in (("get_run", lambda: mlflow.get_run(run_id)),
                       ("get_metric_history", lambda: mlflow.MlflowClient().get_metric_history(run_id, "before")),
                       ("search_runs", lambda: mlflow.search_runs([os.environ["MLFLOW_EXPERIMENT_ID"]], output_format="list"))):
        started = time.perf_counter()
        try:
            read()
            outcomes[name] = {"ok": True}
        except MlflowException as exc:
            outcomes[name] = {"ok": False, "type": type(exc).__name__, "message": str(exc)[:300]}
        outcomes[name]["seconds"] = time.perf_counter() - started
    _mark({"reads": outcomes})


def autolog_fit():
    """mlflow.tensorflow.autolog(), and a hand-written callback that logs each epoch's loss through
    MLflow's API (as users write before they find MlflowCallback), around a Keras 3 fit (what MLflow's
    autolog hooks): they and the runtime's callback log the same epoch keys."""
    import keras
    import numpy as np

    class LogEpochs(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            mlflow.log_metrics({k: float(v) for k, v in (logs or {}).items()}, step=epoch)

    mlflow.tensorflow.autolog(log_models=False, log_datasets=False)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x.sum(axis=1, keepdims=True) > 0).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    model.fit(x, y, epochs=int(os.environ.get("LOOP_EPOCHS", "3")), batch_size=32, verbose=0,
              callbacks=[LogEpochs()])
