"""One run across retries: the run key, reattaching, the attempt count and where steps go on.

Against the live MLflow server, with real tf-keras fits; the retried *process* (killed, then started
again with the same ids) is tests/tfx/test_multiworker.py::test_a_killed_task_started_again_continues_its_run.
"""
from __future__ import annotations

import uuid

import numpy as np
import pytest

from tests.runtime.helpers import deps, read_json
from trainer_runtime.tracking.attempts import ATTEMPTS_TAG, RUN_KEY_TAG, run_key
from trainer_runtime.core.config import load_config
from trainer_runtime.run.session import run_tracked
from trainer_runtime.training.wrap import train_with_callback


@pytest.mark.parametrize("configured, tags, env, key", [
    ("mine", {"vertex.pipeline_job_id": "p-1", "vertex.task_name": "Trainer"}, {"CLOUD_ML_JOB_ID": "9"}, "mine"),
    (None, {"vertex.pipeline_job_id": "p-1", "vertex.task_name": "Trainer"}, {"CLOUD_ML_JOB_ID": "9"},
     "vertex-pipeline/p-1/Trainer"),
    (None, {"tfx.pipeline": "p", "tfx.pipeline_run_id": "r1", "tfx.component": "Trainer"}, {"CLOUD_ML_JOB_ID": "9"},
     "vertex-custom-job/9"),
    (None, {"tfx.pipeline": "p", "tfx.pipeline_run_id": "2026-11-23T12:00:00.1", "tfx.component": "Trainer"}, {},
     "tfx/p/2026-11-23T12:00:00.1/Trainer"),
    (None, {"tfx.pipeline": "p", "tfx.component": "Trainer"}, {}, None),
    (None, {}, {}, None),
    ("it's \"quoted\"", {}, {}, "it_s__quoted_"),
])
def test_the_run_key_comes_from_where_the_task_runs(configured, tags, env, key):
    assert run_key(configured, tags, env) == key


def _env(uri: str, experiment: str, **extra) -> dict:
    return {"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": experiment, **extra}


def _attempt(env: dict, status_dir, epochs: int, initial_epoch: int = 0, fail: bool = False) -> dict:
    """One attempt of a task: a tiny tf-keras fit inside run_tracked; returns its status."""
    def fit():
        import tf_keras

        model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
        model.fit(x, x.sum(axis=1), epochs=epochs, initial_epoch=initial_epoch, batch_size=16, verbose=0)
        if fail:
            raise RuntimeError("preempted after the fit")

    try:
        run_tracked(lambda: load_config(env), lambda ctx: train_with_callback(ctx, fit), status_dir=str(status_dir),
                    deps=deps(env))
    except Exception:
        assert fail
    return read_json(status_dir / "mlflow_status.json")


def _runs(uri: str, experiment: str):
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    return client, client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


def test_a_retried_task_continues_its_run(mlflow_server, tmp_path, clean_env):
    experiment = f"retry-{uuid.uuid4().hex[:8]}"
    env = _env(mlflow_server.url, experiment, CLOUD_ML_JOB_ID="4455")
    first = _attempt(env, tmp_path / "a1", epochs=2, fail=True)
    assert first["stage"] == "failed" and first["attempt"] == 1
    second = _attempt(env, tmp_path / "a2", epochs=3)  # starts again at epoch 0
    assert second["stage"] == "completed" and second["attempt"] == 2
    client, runs = _runs(mlflow_server.url, experiment)
    assert [r.info.run_id for r in runs] == [first["run_id"]] == [second["run_id"]]
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags[ATTEMPTS_TAG] == "2" and run.data.tags[RUN_KEY_TAG] == "vertex-custom-job/4455"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert sorted(steps) == [0, 1, 2, 3, 4], "the second attempt's epochs 0-2 go on after the first's 0-1"


def test_a_restored_fit_continues_at_its_epoch(mlflow_server, tmp_path, clean_env):
    """Keras' BackupAndRestore restarts fit at the epoch it had reached: its steps are the epochs'."""
    experiment = f"retry-{uuid.uuid4().hex[:8]}"
    env = _env(mlflow_server.url, experiment, CLOUD_ML_JOB_ID="4456")
    _attempt(env, tmp_path / "a1", epochs=2, fail=True)
    _attempt(env, tmp_path / "a2", epochs=4, initial_epoch=2)
    client, [run] = _runs(mlflow_server.url, experiment)
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss")) == [0, 1, 2, 3]


def test_without_a_key_every_start_is_a_run_and_mlflow_run_id_wins(mlflow_server, tmp_path, clean_env):
    experiment = f"retry-{uuid.uuid4().hex[:8]}"
    plain = _env(mlflow_server.url, experiment)
    a = _attempt(plain, tmp_path / "a", epochs=1)
    b = _attempt(plain, tmp_path / "b", epochs=1)
    assert a["run_id"] != b["run_id"] and a["attempt"] == b["attempt"] == 1
    # a keyed task told to log into run a: run a it is, its second attempt, steps after its epoch 0
    keyed = _env(mlflow_server.url, experiment, CLOUD_ML_JOB_ID="4457", MLFLOW_RUN_ID=a["run_id"])
    c = _attempt(keyed, tmp_path / "c", epochs=1)
    assert c["run_id"] == a["run_id"] and c["attempt"] == 2
    client, runs = _runs(mlflow_server.url, experiment)
    assert len(runs) == 2
    assert sorted(m.step for m in client.get_metric_history(a["run_id"], "loss")) == [0, 1]
