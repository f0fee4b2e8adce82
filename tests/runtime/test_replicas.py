"""run_tracked on each replica of a distributed training, against the live MLflow server.

The processes of a real cluster are in tests/tfx/test_multiworker.py; here each role goes through
``run_tracked`` in this process, with the TF_CONFIG that role would have.
"""
from __future__ import annotations

import json
import uuid

import pytest

from tests.runtime.helpers import deps, read_json
from trainer_runtime.core.config import load_config
from trainer_runtime.core.errors import UserCodeError
from trainer_runtime.run.session import run_tracked
from trainer_runtime.training.wrap import train_with_callback
from trainer_runtime.training.user_code import call_user

CLUSTER = {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2", "127.0.0.1:3"]}


def env_for(uri: str, experiment: str, kind: str, index: int, cluster=CLUSTER) -> dict:
    return {"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": experiment,
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})}


def experiment_runs(uri: str, experiment: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def test_a_worker_trains_untracked_and_records_only_its_own_ending(mlflow_server, tmp_path, clean_env):
    experiment = f"replica-{uuid.uuid4().hex[:8]}"
    env = env_for(mlflow_server.url, experiment, "worker", 1, cluster={"worker": ["127.0.0.1:1", "127.0.0.1:2"]})
    seen = []
    import tf_keras

    ORIGINAL_FIT[:] = [tf_keras.Model.__dict__["fit"]]

    def train(ctx):
        seen.append(ctx)
        ctx.logger.log_params({"p": 1})  # what tracked training code does: nothing happens here
        return train_with_callback(ctx, hooked_fit_is_absent)

    result = run_tracked(lambda: load_config(env), train, status_dir=str(tmp_path), deps=deps(env))
    assert result == "no callback"
    assert not seen[0].tracks and seen[0].run_id is None
    assert experiment_runs(mlflow_server.url, experiment) == [], "no preflight, no experiment, no run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow_status.worker-1.json"]
    status = read_json(tmp_path / "mlflow_status.worker-1.json")
    assert status["stage"] == "completed" and status["exit_code"] == 0 and status["error"] is None
    assert list(status["timestamps"]) == ["training", "completed"]
    assert (status["replica"], status["task_type"], status["task_index"]) == ("worker-1", "worker", 1)
    assert status["cluster"] == {"worker": 2} and status["source"] == "TF_CONFIG"


def hooked_fit_is_absent():
    import tf_keras

    assert tf_keras.Model.__dict__["fit"] is ORIGINAL_FIT[0], "the MLflow callback was hooked into fit"
    return "no callback"


ORIGINAL_FIT: list = []


def test_a_failing_worker_says_why_in_its_own_file(mlflow_server, tmp_path, clean_env):
    env = env_for(mlflow_server.url, f"replica-{uuid.uuid4().hex[:8]}", "worker", 0)

    def train(ctx):
        return call_user(boom)

    with pytest.raises(UserCodeError):
        run_tracked(lambda: load_config(env), train, status_dir=str(tmp_path), deps=deps(env))
    assert not (tmp_path / "mlflow_status.json").exists()
    status = read_json(tmp_path / "mlflow_status.worker-0.json")
    assert status["stage"] == "failed" and status["exit_code"] == 4
    assert status["error"]["type"] == "UserCodeError" and "worker 0 ran out of data" in status["error"]["message"]
    assert "boom" in status["error"]["traceback"]


def boom():
    raise RuntimeError("worker 0 ran out of data")


def test_the_chief_tags_the_shape_and_names_the_replica_that_failed(mlflow_server, tmp_path, clean_env):
    experiment = f"replica-{uuid.uuid4().hex[:8]}"
    worker = env_for(mlflow_server.url, experiment, "worker", 1)
    with pytest.raises(UserCodeError):
        run_tracked(lambda: load_config(worker), lambda ctx: call_user(boom), status_dir=str(tmp_path),
                    deps=deps(worker))

    chief = env_for(mlflow_server.url, experiment, "chief", 0)

    def collective_fails(ctx):  # what the chief sees when a peer is gone
        raise call_user(lambda: (_ for _ in ()).throw(ConnectionError("Collective ops is aborted by: peer down")))

    with pytest.raises(UserCodeError):
        run_tracked(lambda: load_config(chief), collective_fails, status_dir=str(tmp_path), deps=deps(chief))
    status = read_json(tmp_path / "mlflow_status.json")
    assert status["stage"] == "failed" and status["attempt"] == 1
    assert status["replicas"] == {"worker-1": {"stage": "failed", "exit_code": 4, "error": {
        "type": "UserCodeError", "message": "boom raised RuntimeError: worker 0 ran out of data"}}}
    [run] = experiment_runs(mlflow_server.url, experiment)
    assert run.info.status == "FAILED" and run.info.run_id == status["run_id"]
    tags = run.data.tags
    assert (tags["tf.cluster.chief"], tags["tf.cluster.workers"], tags["tf.cluster.replicas"]) == ("1", "2", "3")
    assert tags["tf.cluster.tracked_by"] == "chief-0"
