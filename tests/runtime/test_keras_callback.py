"""The Keras callback and the background logger, against the live MLflow server."""
from __future__ import annotations

import math
import time
import uuid

import numpy as np
import pytest

from trainer_runtime.training import keras_hook
from trainer_runtime.training.keras_callback import CallbackCore, make_callback
from trainer_runtime.tracking.logger import sanitize_name
from trainer_runtime.core.retry import Deadline
from tests.runtime.helpers import new_logger


@pytest.fixture
def new_run(mlflow_server):
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server.url)
    exp = client.create_experiment(f"cb-{uuid.uuid4().hex[:8]}")
    return client, client.create_run(exp).info.run_id


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    return x, (x.sum(axis=1, keepdims=True) > 0).astype("float32")


def _fit(keras, callbacks=None, epochs=3, **kwargs):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"])
    x, y = _data()
    started = time.monotonic()
    model.fit(x, y, epochs=epochs, batch_size=16, validation_split=0.25, verbose=0, callbacks=callbacks, **kwargs)
    return time.monotonic() - started


def _steps(client, run_id, name):
    return sorted(m.step for m in client.get_metric_history(run_id, name))


@pytest.mark.parametrize("module_name", ["tf_keras", "keras"])
def test_per_epoch_metrics_under_each_keras(module_name, new_run):
    import importlib

    keras = importlib.import_module(module_name)
    client, run_id = new_run
    logger = new_logger(client, run_id)
    core = CallbackCore(logger)
    with keras_hook.installed(core, [keras]):
        _fit(keras)
        _fit(keras, epochs=2)  # a second fit continues the epoch steps
    report = logger.close(Deadline(30))
    assert report.pending == 0 and report.counts["rejected"] == {}
    for name in ("loss", "val_loss", "accuracy", "val_accuracy"):
        assert _steps(client, run_id, name) == [0, 1, 2, 3, 4], name
    params = client.get_run(run_id).data.params
    assert params["keras.epochs"] == "3" and params["keras.fit2.epochs"] == "2"
    assert params["keras.optimizer"] == "SGD"
    assert set(core.final_metrics) >= {"loss", "val_loss"}


def test_hook_is_removed_afterwards():
    import tf_keras

    original = tf_keras.Model.fit
    with keras_hook.installed(CallbackCore(logger=None), [tf_keras]):
        assert tf_keras.Model.fit is not original
    assert tf_keras.Model.fit is original


def test_added_once_even_if_the_user_adds_ours(new_run):
    import tf_keras

    client, run_id = new_run
    logger = new_logger(client, run_id)
    core = CallbackCore(logger)
    with keras_hook.installed(core, [tf_keras]):
        _fit(tf_keras, callbacks=[make_callback(tf_keras.callbacks.Callback, core)], epochs=2)
    logger.close(Deadline(30))
    values = client.get_metric_history(run_id, "loss")
    assert sorted(m.step for m in values) == [0, 1], "one value per epoch, not two"


def test_mlflows_own_callback_is_replaced(mlflow_server, new_run, monkeypatch):
    import mlflow
    from mlflow.tensorflow import MlflowCallback

    client, run_id = new_run
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    mlflow.set_tracking_uri(mlflow_server.url)
    with mlflow.start_run(run_id=run_id) as active:
        theirs = MlflowCallback(active)
        kept = keras_hook.with_callback([theirs], object())
    assert theirs not in kept and len(kept) == 1


def test_a_slow_server_never_blocks_training(fault_proxy, clean_env):
    """5 s per request at the server; the hooked fit takes no request's time. Measured against the same fit
    unhooked just before (the machine's load slows both alike: make test once measured 6.0 s for three
    epochs that take 1 s on a quiet machine), and as the callback's own time on the training thread."""
    import tf_keras
    from mlflow import MlflowClient

    client = MlflowClient(fault_proxy.url)
    exp = client.create_experiment(f"slow-{uuid.uuid4().hex[:8]}")
    run_id = client.create_run(exp).info.run_id
    _fit(tf_keras, epochs=1)  # warm up TF outside the measurement
    fault_proxy.control.set(latency=5.0)
    unhooked = _fit(tf_keras, epochs=3)
    logger = new_logger(client, run_id)
    core = CallbackCore(logger)
    with keras_hook.installed(core, [tf_keras]):
        seconds = _fit(tf_keras, epochs=3)
    assert core.seconds < 1.0, "the callback waited on the training thread (one request is 5 s)"
    assert seconds - unhooked < 2.5, (seconds, unhooked)
    report = logger.close(Deadline(60))
    fault_proxy.control.set(latency=0)
    assert report.pending == 0 and report.counts["sent"] == report.counts["accepted"]
    assert _steps(client, run_id, "loss") == [0, 1, 2]


def test_bad_values_and_names_never_lose_the_rest_of_the_batch(new_run):
    client, run_id = new_run
    logger = new_logger(client, run_id)
    for step in range(3):
        logger.log_metrics({"loss": 0.5, "bad_nan": math.nan, "inf": math.inf, "text": "n/a",
                            "weird@name!": 1.0, "factorized_top_k/top_100_categorical_accuracy": 0.9}, step)
    report = logger.close(Deadline(30))
    metrics = client.get_run(run_id).data.metrics
    # MLflow's SQL store keeps NaN and stores +inf as the largest float
    assert math.isnan(metrics.pop("bad_nan")) and metrics.pop("inf") >= 1.7e308, "stored as MLflow stores them"
    assert metrics == {"loss": 0.5, "weird_name_": 1.0, "factorized_top_k/top_100_categorical_accuracy": 0.9}
    counts = report.counts
    assert counts["rejected"] == {"not_a_number": 3} and set(counts["rejected_names"]) == {"text"}
    assert counts["non_finite"] == 6 and counts["renamed"] == {"weird@name!": "weird_name_"}
    assert counts["accepted"] == 18 == counts["sent"] + counts["pending"] + sum(counts["rejected"].values())


def test_server_rejection_is_retried_one_by_one(new_run):
    """The real server refuses to change a param; the metrics in the same batch still land."""
    client, run_id = new_run
    client.log_param(run_id, "lr", "0.1")
    logger = new_logger(client, run_id)
    logger.log_params({"lr": "0.2", "batch": 16})
    logger.log_metrics({"loss": 0.25}, 0)
    report = logger.close(Deadline(30))
    data = client.get_run(run_id).data
    assert data.metrics == {"loss": 0.25}
    assert data.params == {"lr": "0.1", "batch": "16"}
    assert report.counts["rejected"] == {"server_rejected": 1} and list(report.counts["rejected_names"]) == ["lr"]


def test_sanitize_name():
    assert sanitize_name("/a..b@c") == "a_b_c"
    assert sanitize_name("val_factorized_top_k/top_1_categorical_accuracy") == \
        "val_factorized_top_k/top_1_categorical_accuracy"


def test_close_is_bounded_when_the_server_hangs(fault_proxy, clean_env):
    """A hung server (60 s per request) must not hold the end of the job; nothing is lost: the
    points and the run's end stay in the spool, in order."""
    from mlflow import MlflowClient

    from trainer_runtime.tracking.spool import parse

    client = MlflowClient(fault_proxy.url)
    exp = client.create_experiment(f"hang-{uuid.uuid4().hex[:8]}")
    run_id = client.create_run(exp).info.run_id
    fault_proxy.control.set(latency=60.0)
    logger = new_logger(client, run_id)
    for step in range(5):
        logger.log_metrics({"loss": 1.0, "acc": 0.5}, step)
    started = time.monotonic()
    report = logger.close(Deadline(2), end_status="FINISHED")
    assert time.monotonic() - started < 2.5
    assert report.pending == 10 and report.counts["sent"] == 0 and not report.run_closed
    spool_dir = logger.spool.directory
    spooled = parse(open(f"{spool_dir}/spool.jsonl").read(), open(f"{spool_dir}/spool.acked").read())
    assert [r["k"] for r in spooled.pending()] == ["m"] * 10 + ["end"], "everything kept, the end last"


def test_a_7000_character_param_is_cut_to_mlflows_limit_and_counted(new_run):
    client, run_id = new_run
    logger = new_logger(client, run_id)
    logger.log_params({"vocabulary": "x" * 7000, "max_tokens": 512, "tokenizer": "wordpiece"})
    report = logger.close(Deadline(30), end_status="FINISHED")
    params = client.get_run(run_id).data.params
    assert len(params["vocabulary"]) == 6000 and params["vocabulary"].endswith("…")
    assert params["max_tokens"] == "512" and params["tokenizer"] == "wordpiece", "not mistaken for secrets"
    counts = report.counts
    assert counts["truncated"] == {"vocabulary": 7000} and counts["sent"] == counts["accepted"] == 3


def test_the_callback_takes_tensor_logs_so_keras_never_syncs_a_step_for_it():
    """tf-keras' Callback.__init__ sets _supports_tf_logs=False on the instance; a class attribute
    would be hidden and every step would wait for a numpy copy of the logs (bench: 130-260 µs)."""
    import tf_keras

    callback = make_callback(tf_keras.callbacks.Callback, CallbackCore(logger=None, every_n_steps=1))
    assert callback._supports_tf_logs is True
    callbacks = tf_keras.callbacks.CallbackList([callback])
    assert callbacks._supports_tf_logs is True


# --- a Keras that user code imports after the hook went in --------------------------------------
LATE_IMPORT = r"""
import json, sys
import numpy as np
from trainer_runtime.training import keras_hook
from trainer_runtime.training.keras_callback import CallbackCore

class Recorder:
    def __init__(self):
        self.metrics = []
    def log_params(self, params):
        pass
    def log_metrics(self, metrics, step, prefix=""):
        self.metrics.append((prefix, step, sorted(metrics)))

recorder = Recorder()
core = CallbackCore(recorder, every_n_steps=1)
before = sorted(n for n in keras_hook.KERAS_NAMES if n in sys.modules)
with keras_hook.installed(core):
    import {late} as late_keras  # what user code in a run_fn does, after the runtime hooked fit
    model = late_keras.Sequential([late_keras.Input((4,)), late_keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((32, 4)), np.ones((32, 1)), epochs=2, batch_size=16, verbose=0)
print(json.dumps({{"before": before, "fits": core.fits, "metrics": recorder.metrics,
                  "unhooked": late_keras.Model.fit.__module__}}))
"""


@pytest.mark.parametrize("legacy,late", [("1", "keras"), ("", "tf_keras")],
                         ids=["TF_USE_LEGACY_KERAS=1, user imports keras (Keras 3)",
                              "TF_USE_LEGACY_KERAS unset, user imports tf_keras"])
def test_a_keras_user_code_imports_after_the_hook_still_gets_the_callback(legacy, late):
    """On the 1.17/1.21 bases TF_USE_LEGACY_KERAS=1 is set, and modern code imports `keras` (Keras 3); or the
    variable is unset and code imports tf_keras. Each fit is logged (epochs and, every step, steps), in a
    fresh interpreter where that Keras was not imported when the hook went in; afterwards fit is restored."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, TF_USE_LEGACY_KERAS=legacy, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", LATE_IMPORT.format(late=late)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert late not in found["before"], "the test must import that Keras only after the hook is in"
    assert found["fits"] == 1
    epochs = [(step, keys) for prefix, step, keys in found["metrics"] if prefix == ""]
    steps = [step for prefix, step, keys in found["metrics"] if prefix == "step/"]
    assert epochs == [(0, ["loss"]), (1, ["loss"])] and steps == [1, 2, 3, 4]
    assert not found["unhooked"].startswith("trainer_runtime"), "fit restored after the hook"


@pytest.mark.parametrize("module_name", ["tf_keras", "keras"])
def test_step_logging_under_each_keras(module_name, new_run):
    import importlib

    keras = importlib.import_module(module_name)
    client, run_id = new_run
    logger = new_logger(client, run_id)
    with keras_hook.installed(CallbackCore(logger, every_n_steps=2), [keras]):
        _fit(keras, epochs=2)  # 48 train rows / 16 = 3 steps per epoch -> 6 steps
    logger.close(Deadline(30))
    assert _steps(client, run_id, "step/loss") == [2, 4, 6]
    assert _steps(client, run_id, "loss") == [0, 1]


def test_an_epoch_after_an_ignored_stop_is_logged_then_the_training_stops():
    """The callback's safe points ask the session's signal state: an epoch that ended after a swallowed
    SIGTERM keeps its metrics (queued first), then the stop is raised again; a step too."""
    from trainer_runtime.core.errors import Killed

    class Queue:
        def __init__(self):
            self.logged = []

        def log_metrics(self, values, step, prefix=""):
            self.logged.append((step, prefix, dict(values)))

    stops = []

    def stop_check(where):
        if stops:
            raise Killed(15)

    logger = Queue()
    core = CallbackCore(logger, every_n_steps=1, stop_check=stop_check)
    core.epoch_end(0, {"loss": 1.0})
    stops.append("SIGTERM")
    with pytest.raises(Killed):
        core.batch_end({"loss": 0.5})
    with pytest.raises(Killed):
        core.epoch_end(1, {"loss": 0.5})
    assert [step for step, prefix, _ in logger.logged if not prefix] == [0, 1]
    with pytest.raises(Killed):
        core.train_begin({"epochs": 2}, None)
    assert core.fits == 0
