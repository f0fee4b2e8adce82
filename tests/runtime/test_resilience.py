"""Faults during training: the background logger rides them out without losing metrics or blocking."""
from __future__ import annotations

import threading
import time
import uuid

import pytest

from tests.runtime.helpers import new_logger
from trainer_runtime.core.retry import Deadline


def _run(url):
    from mlflow import MlflowClient

    client = MlflowClient(url)
    exp = client.create_experiment(f"res-{uuid.uuid4().hex[:8]}")
    return client, client.create_run(exp).info.run_id


#: what an overloaded MLflow server answers when its SQLAlchemy pool has no free connection for 30 s
#: (mlflow/store/db/utils.py maps sqlalchemy's TimeoutError to BAD_REQUEST, HTTP 400): the load, not the
#: content; seen by the fault suite's own server (8 concurrent scenarios on MLflow's default pool of 5 + 10)
POOL_EXHAUSTED = {"status": 400, "status_path": "/api/2.0/mlflow/runs/log-batch", "status_body": (
    '{"error_code": "BAD_REQUEST", "message": "QueuePool limit of size 5 overflow 10 reached, connection '
    'timed out, timeout 30.00 (Background on this error at: https://sqlalche.me/e/20/3o7r)"}')}


@pytest.mark.parametrize("fault", [{"drop": True}, {"status": 503}, POOL_EXHAUSTED],
                         ids=["dropped", "503", "pool-exhausted-400"])
def test_a_server_outage_mid_training_loses_nothing(fault_proxy, clean_env, fault):
    """Dropped connections, 503s, or an overloaded server's 400s for ~4 s while epochs are logged;
    everything lands afterwards."""
    client, run_id = _run(fault_proxy.url)
    logger = new_logger(client, run_id)
    logger.log_metrics({"loss": 1.0}, 0)
    assert logger.flush(30)
    fault_proxy.control.set(**fault)
    healed = threading.Timer(4.0, lambda: fault_proxy.control.set(drop=False, status=None))
    healed.start()
    started = time.monotonic()
    for step in range(1, 20):
        logger.log_metrics({"loss": 1.0 / (step + 1), "val_loss": 2.0 / (step + 1)}, step)
    put_seconds = time.monotonic() - started
    report = logger.close(Deadline(90), end_status="FINISHED")
    healed.join()
    assert put_seconds < 0.2, "training never waits on the outage"
    counts = report.counts
    assert report.pending == 0 and report.run_closed and counts["sent"] == counts["accepted"] == 39
    assert counts["send_failures"] >= 1 and counts["outage_seconds"] > 0, "the outage leaves a trace"
    # noticed within the backoff's 2 s cap (+ jitter) of the server answering again, not 4 s later
    assert counts["outage_seconds"] < 4.0 + 2.4 + 0.4, counts["outage_seconds"]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(run_id, "loss")) == list(range(20))
    assert sorted(m.step for m in client.get_metric_history(run_id, "val_loss")) == list(range(1, 20))


def test_keras_module_choice_follows_tf_use_legacy_keras():
    """In a fresh interpreter: tf-keras when TF_USE_LEGACY_KERAS=1, Keras 3 otherwise."""
    import os
    import subprocess
    import sys

    code = "from trainer_runtime.training.keras_hook import keras_modules; print([m.__name__ for m in keras_modules()])"
    for value, expected in (("1", "['tf_keras']"), ("", "['keras']")):
        env = dict(os.environ, TF_USE_LEGACY_KERAS=value, TF_CPP_MIN_LOG_LEVEL="3")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert out.stdout.strip().splitlines()[-1] == expected, out.stderr[-2000:]


def test_a_stuck_spool_disk_never_blocks_training_and_the_overflow_is_counted(mlflow_server, clean_env):
    """The spool's disk stalls (a test double holds its writes: a stuck disk cannot be made here):
    training's puts stay instant, what exceeds the queue bound is dropped and counted, and once the
    disk is back the rest lands with the accounting exact."""
    client, run_id = _run(mlflow_server.url)
    logger = new_logger(client, run_id, max_queue=50)
    disk, stuck = threading.Event(), threading.Event()
    append, held = logger.spool.append, []

    def stuck_append(records):
        held.append([r.get("step") for r in records])
        stuck.set()
        disk.wait(60)
        return append(records)

    logger.spool.append = stuck_append
    logger.log_metrics({"loss": 0.0}, 0)
    assert stuck.wait(30), "the writer never took step 0 to the spool"
    assert held == [[0]], held  # the writer holds step 0 alone: the queue's 50 places are free
    started = time.monotonic()
    for step in range(1, 201):
        logger.log_metrics({"loss": float(step)}, step)
    put_seconds = time.monotonic() - started
    disk.set()
    report = logger.close(Deadline(60), end_status="FINISHED")
    counts = report.counts
    assert put_seconds < 0.1, f"200 puts took {put_seconds:.3f}s"
    assert counts["rejected"] == {"queue_full": 150}
    assert counts["accepted"] == 201 == counts["sent"] + counts["pending"] + 150
    assert report.run_closed and counts["sent"] == 51
    assert [m.step for m in sorted(client.get_metric_history(run_id, "loss"), key=lambda m: m.step)] \
        == list(range(51))


def test_the_caller_may_reuse_its_dict_after_logging(mlflow_server, clean_env):
    """What is logged is what the dict held at the call, not when the writer got to it."""
    client, run_id = _run(mlflow_server.url)
    logger = new_logger(client, run_id)
    values = {"loss": 1.0}
    for step in range(5):
        values["loss"] = float(step)
        logger.log_metrics(values, step)
    assert logger.close(Deadline(30), end_status="FINISHED").run_closed
    assert {m.step: m.value for m in client.get_metric_history(run_id, "loss")} == {s: float(s) for s in range(5)}
