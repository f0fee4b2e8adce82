"""Multi-worker training, replayed as Vertex AI Training runs it: real replicas, one MLflow run.

The CustomJob comes from the real tracked launcher (``TrackedVertexTrainingExecutor.Do`` in this
process, with TFX's own Vertex client): only the Vertex JobService is a stand-in, because no Vertex
API is reachable here (tests/harness/vertex_training.py; it records the job and runs nothing).
Then each replica's container command (``python -m tfx.scripts.run_executor --executor_class_path
…TrackedExecutor …``) runs as a process of its own, with the TF_CONFIG Vertex sets (or a chief-less
``{"worker": [...]}`` one), and MultiWorkerMirroredStrategy all-reduces between them on loopback
ports. The user module is tests/user_code/multiworker_pkg (the examples/distributed run_fn).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import MEASUREMENTS
from tests.harness.vertex_training import captured_jobs, cluster_env, install, replica_command, run_replicas

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
MODULE = "tests.user_code.multiworker_pkg.train"
TRACKED = "trainer_runtime.tfx.executor.TrackedExecutor"
EPOCHS = 3


@pytest.fixture(scope="module")
def examples(tmp_path_factory, interactions) -> Path:
    """CsvExampleGen's layout (Split-*/data_tfrecord-*.gz, GZIP tf.Examples) of the interactions, written directly."""
    import csv

    import tensorflow as tf

    root = tmp_path_factory.mktemp("examples")
    rows = list(csv.DictReader((interactions / "interactions.csv").open()))
    for split, part in (("train", rows[:2000]), ("eval", rows[2000:])):
        (root / f"Split-{split}").mkdir()
        with tf.io.TFRecordWriter(str(root / f"Split-{split}" / "data_tfrecord-00000-of-00001.gz"), "GZIP") as out:
            for row in part:
                feature = {k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[row[k].encode()]))
                           for k in ("user_id", "item_id")}
                out.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return root


class Task:
    """One Trainer task: its artifacts, the CustomJob the tracked launcher submits for it, its outcome."""

    def __init__(self, root: Path, examples: Path, uri: str, *, run_fn: str, pools: list[int],
                 extra: dict | None = None) -> None:
        self.root, self.uri = root, uri
        self.experiment = f"mw-{uuid.uuid4().hex[:8]}"
        self.model, self.model_run = root / "model", root / "model_run"
        self.custom_config = {
            "epochs": EPOCHS, **(extra or {}),
            "ai_platform_training_args": {"project": "my-project", "job_spec": {"worker_pool_specs": [
                {"machine_spec": {"machine_type": "n1-standard-4"}, "replica_count": count,
                 "container_spec": {"image_uri": "us-central1-docker.pkg.dev/my-project/ml/trainer-runtime:v0.1.0"}}
                for count in pools]}},
            "ai_platform_enable_vertex": True, "ai_platform_vertex_region": "us-central1",
            "trainer_runtime": {"tracking_uri": uri, "experiment_name": self.experiment}}
        self.run_fn = run_fn
        self.examples = examples

    def submit(self, monkeypatch) -> dict:
        """The tracked launcher's Do, as a TFX pipeline on any runner calls it; returns the CustomJob."""
        from google.protobuf import json_format
        from tfx.dsl.components.base import base_executor
        from tfx.proto import trainer_pb2
        from tfx.proto.orchestration import pipeline_pb2
        from tfx.types import artifact_utils, standard_artifacts

        from trainer_runtime.tfx.vertex_training import TrackedVertexTrainingExecutor

        from google.cloud.aiplatform import gapic

        monkeypatch.setattr(gapic, "JobServiceClient", gapic.JobServiceClient)  # restored after the test
        install(self.root / "jobs", run=False)
        examples = standard_artifacts.Examples()
        examples.uri = str(self.examples)
        examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
        model, model_run = standard_artifacts.Model(), standard_artifacts.ModelRun()
        model.uri, model_run.uri = str(self.model), str(self.model_run)
        node = pipeline_pb2.PipelineNode()
        node.node_info.id = "Trainer"
        context = base_executor.BaseExecutor.Context(tmp_dir=str(self.root / "tmp"), unique_id="1",
                                                     pipeline_node=node,
                                                     pipeline_info=pipeline_pb2.PipelineInfo(id="recommender"),
                                                     pipeline_run_id="run-20261123")
        TrackedVertexTrainingExecutor(context).Do(
            {"examples": [examples]}, {"model": [model], "model_run": [model_run]},
            {"train_args": json_format.MessageToJson(trainer_pb2.TrainArgs(num_steps=30)),
             "eval_args": json_format.MessageToJson(trainer_pb2.EvalArgs(num_steps=2)),
             "run_fn": f"{MODULE}.{self.run_fn}", "custom_config": json.dumps(self.custom_config)})
        [job] = captured_jobs(self.root / "jobs")
        return job["custom_job"]

    def status(self, name: str = "mlflow_status.json") -> dict:
        return json.loads((Path(str(self.model_run) + "-mlflow") / name).read_text())

    def status_files(self) -> list[str]:
        return sorted(p.name for p in Path(str(self.model_run) + "-mlflow").iterdir())

    def runs(self) -> tuple:
        from mlflow import MlflowClient

        client = MlflowClient(self.uri)
        experiment = client.get_experiment_by_name(self.experiment)
        return client, (client.search_runs([experiment.experiment_id]) if experiment else [])


def replica_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}


def logs(replicas) -> str:
    return "\n".join(f"--- {r.name} (exit {r.returncode}) ---\n{r.text()[-3000:]}" for r in replicas)


def points_per_key(client, run_id: str, keys) -> dict[str, list[int]]:
    return {key: sorted(m.step for m in client.get_metric_history(run_id, key)) for key in keys}


def test_two_workers_without_a_chief_make_one_run(mlflow_server, examples, tmp_path, monkeypatch):
    """{"worker": [w0, w1]}: TensorFlow's chief is worker 0; it alone tracks. One run, each point once."""
    task = Task(tmp_path, examples, mlflow_server.url, run_fn="run_fn", pools=[1, 1])
    job = task.submit(monkeypatch)
    # worker-1 runs the image's entrypoint with run_executor's arguments and the stock Trainer executor:
    # entrypoint.py forwards it to tfx.scripts.run_executor with TrackedExecutor swapped in.
    second = job["job_spec"]["worker_pool_specs"][1]["container_spec"]
    assert second["command"][:3] == ["python", "-m", "tfx.scripts.run_executor"]
    second["command"] = ["python", str(REPO / "entrypoint.py"), *second["command"][3:]]
    second["command"][second["command"].index(TRACKED)] = "tfx.components.trainer.executor.GenericExecutor"
    started = time.monotonic()
    replicas = run_replicas(job, tmp_path / "replicas", layout="workers", base_env=replica_env())
    wall = time.monotonic() - started
    MEASUREMENTS.append(f"2-worker MultiWorkerMirroredStrategy Trainer (chief-less cluster): {wall:.1f}s wall")
    assert [(r.name, r.returncode) for r in replicas] == [("worker-0", 0), ("worker-1", 0)], logs(replicas)

    client, runs = task.runs()
    assert len(runs) == 1, "exactly one MLflow run for the whole cluster"
    run = runs[0]
    assert run.info.status == "FINISHED"
    # the fit's own keys (system/* is the chief's system-metrics sampling)
    points = points_per_key(client, run.info.run_id, [k for k in run.data.metrics if not k.startswith("system/")])
    assert set(points) == {"loss", "top_5_accuracy", "val_loss", "val_top_5_accuracy"}
    assert all(steps == list(range(EPOCHS)) for steps in points.values()), points
    MEASUREMENTS.append(f"2-worker run: 1 run, points per key {json.dumps({k: len(v) for k, v in points.items()})}")
    tags = run.data.tags
    assert (tags["tf.cluster.workers"], tags["tf.cluster.tracked_by"]) == ("2", "worker-0")
    assert tags["trainer_runtime.run_key"] == "tfx/recommender/run-20261123/Trainer", "from the launching task"
    assert run.data.params["tfx.train_steps"] == "30"

    assert task.status_files() == ["mlflow_info.json", "mlflow_status.json", "mlflow_status.worker-1.json"]
    chief, worker = task.status(), task.status("mlflow_status.worker-1.json")
    assert chief["stage"] == "completed" and chief["run_id"] == run.info.run_id and chief["attempt"] == 1
    assert worker["stage"] == "completed" and worker["exit_code"] == 0 and worker["run_id"] is None
    assert worker["replica"] == "worker-1" and worker["cluster"] == {"worker": 2}
    assert (task.model / "Format-Serving" / "saved_model.pb").exists(), "the chief wrote the SavedModel"
    assert "replica worker-1 of a 2 worker cluster: the chief tracks the run" in replicas[1].text()
    assert f"forwarding to tfx.scripts.run_executor with executor {TRACKED}" in replicas[1].text()
    assert "preflight ok" in replicas[0].text() and "preflight ok" not in replicas[1].text()


def test_a_worker_that_raises_is_named_by_its_own_status_and_the_chiefs(mlflow_server, examples, tmp_path,
                                                                          monkeypatch):
    """Chief + 1 worker as Vertex lays them out; the worker raises after epoch 1."""
    task = Task(tmp_path, examples, mlflow_server.url, run_fn="run_fn_worker_fails", pools=[1, 1],
                extra={"fail_on": "worker-0"})
    job = task.submit(monkeypatch)
    replicas = run_replicas(job, tmp_path / "replicas", base_env=replica_env(), teardown_seconds=30)
    names = {r.name: r for r in replicas}
    assert names["worker-0"].returncode == 1 and names["chief-0"].returncode != 0, logs(replicas)

    worker = task.status("mlflow_status.worker-0.json")
    assert worker["stage"] == "failed" and worker["exit_code"] == 4
    assert worker["error"]["type"] == "UserCodeError"
    assert "RuntimeError: worker-0 lost its input shard" in worker["error"]["message"]

    client, [run] = task.runs()
    chief = task.status()
    assert run.info.status in ("FAILED", "KILLED") and chief["stage"] in ("failed", "killed")
    assert chief["replicas"]["worker-0"]["stage"] == "failed", chief.get("replicas")
    assert "worker-0 lost its input shard" in chief["replicas"]["worker-0"]["error"]["message"]
    MEASUREMENTS.append(f"failing worker: chief ended {chief['stage']} ({chief['error']['type']}) "
                        f"{names['chief-0'].seconds - names['worker-0'].seconds:.1f}s after the worker")


def test_a_killed_task_started_again_continues_its_run(mlflow_server, examples, tmp_path, monkeypatch):
    """SIGKILL (a lost node) after epoch 2, then the task again: a new CustomJob of the same pipeline task."""
    task = Task(tmp_path, examples, mlflow_server.url, run_fn="run_fn_slow_epochs", pools=[1],
                extra={"epochs": 4, "epoch_seconds": 2})
    job = task.submit(monkeypatch)
    [(name, env)] = cluster_env(job["job_spec"]["worker_pool_specs"])
    pool = job["job_spec"]["worker_pool_specs"][0]["container_spec"]
    with (tmp_path / "attempt1.log").open("w") as log:
        first = subprocess.Popen(replica_command(pool["command"]), stdout=log, stderr=subprocess.STDOUT,
                                 env={**replica_env(), **env, "CLOUD_ML_JOB_ID": "11"}, start_new_session=True)
    deadline = time.monotonic() + 300
    run_id = None
    while time.monotonic() < deadline and first.poll() is None:
        client, runs = task.runs()
        if runs and len(client.get_metric_history(runs[0].info.run_id, "loss")) >= 2:
            run_id = runs[0].info.run_id
            break
        time.sleep(0.5)
    assert run_id, (tmp_path / "attempt1.log").read_text()[-3000:]
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()

    replicas = run_replicas(job, tmp_path / "attempt2", job_id="12", base_env=replica_env())
    assert replicas[0].returncode == 0, logs(replicas)
    client, runs = task.runs()
    assert [r.info.run_id for r in runs] == [run_id], "the second attempt continued the first one's run"
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags["trainer_runtime.tracking.attempts"] == "2"
    steps = points_per_key(client, run_id, ["loss", "val_loss"])
    assert steps["loss"] == list(range(len(steps["loss"]))) == steps["val_loss"], steps
    assert len(steps["loss"]) in (6, 7), "2 (or 3) epochs of the first attempt, then 4 of the second"
    assert task.status()["attempt"] == 2 and task.status()["stage"] == "completed"
