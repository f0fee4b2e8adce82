"""The model story on the live MLflow server: the serving model by reference with its signatures and
registry version, the Trainer's inputs as datasets, system metrics, link tags; and none of it
breaking a completed training when the registry is missing or the server goes away at the end.

The pipelines are real (LocalDagRunner: CsvExampleGen + an Importer of a KerasTuner
best_hyperparameters file -> Trainer); the outage test calls ``train_tracked`` directly
(the same code TrackedExecutor and the shim run) so that it can take the server down
exactly when the training ends."""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import MEASUREMENTS
from tests.tfx.conftest import mlflow_run, only_dir, status_dir

pytestmark = pytest.mark.slow
HPARAMS = {"learning_rate": 0.1, "embedding_dim": 16}


def _best_hyperparameters(folder: Path) -> Path:
    """What TFX's Tuner writes: ``json.dumps(best_hparams.get_config())`` in best_hyperparameters.txt."""
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    hp.Choice("learning_rate", [0.1, 0.01], default=HPARAMS["learning_rate"])
    hp.Int("embedding_dim", 8, 32, step=8, default=HPARAMS["embedding_dim"])
    folder.mkdir(parents=True)
    (folder / "best_hyperparameters.txt").write_text(json.dumps(hp.get_config()))
    return folder


def _run_pipeline(tmp_path: Path, data: Path, uri: str, runtime: dict, *, tracked: bool = True) -> tuple[str, Path]:
    from tfx import v1 as tfx
    from tfx.dsl.components.base import executor_spec

    experiment = f"lineage-{uuid.uuid4().hex[:8]}"
    root = tmp_path / "root"
    runtime = {"tracking_uri": uri, "experiment_name": experiment, **runtime}
    run_fn = "examples.retrieval.model.run_fn"
    if not tracked:
        runtime["run_fn"], run_fn = run_fn, "trainer_runtime.tfx.run_fn.run_fn"
    example_gen = tfx.components.CsvExampleGen(input_base=str(data))
    hparams = tfx.dsl.Importer(source_uri=str(_best_hyperparameters(tmp_path / "hparams")),
                               artifact_type=tfx.types.standard_artifacts.HyperParameters).with_id("hparams")
    trainer_args = dict(examples=example_gen.outputs["examples"], hyperparameters=hparams.outputs["result"],
                        train_args=tfx.proto.TrainArgs(num_steps=20), eval_args=tfx.proto.EvalArgs(num_steps=2),
                        run_fn=run_fn, custom_config={"epochs": 2, "trainer_runtime": runtime})
    if tracked:
        from trainer_runtime.tfx.executor import TrackedExecutor

        trainer_args["custom_executor_spec"] = executor_spec.ExecutorClassSpec(TrackedExecutor)
    pipeline = tfx.dsl.Pipeline(
        pipeline_name=f"lineage-{uuid.uuid4().hex[:6]}", pipeline_root=str(root),
        components=[example_gen, hparams, tfx.components.Trainer(**trainer_args)],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(tmp_path / "metadata.sqlite")))
    tfx.orchestration.LocalDagRunner().run(pipeline)
    return experiment, root


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def _datasets(run) -> dict[str, dict]:
    found = {}
    for item in run.inputs.dataset_inputs:
        assert {t.key: t.value for t in item.tags} == {"mlflow.data.context": "training"}
        found[item.dataset.name] = {"source": json.loads(item.dataset.source),
                                    "profile": json.loads(item.dataset.profile), "digest": item.dataset.digest}
    return found


def test_a_trainer_run_holds_its_model_data_and_system_metrics(mlflow_server, interactions, tmp_path, tmp_env):
    model_name = f"retrieval-{uuid.uuid4().hex[:6]}"
    experiment, root = _run_pipeline(tmp_path, interactions, mlflow_server.url,
                                     {"register_model_name": model_name, "system_metrics_interval": 1})
    client, run = mlflow_run(mlflow_server.url, experiment)
    run_id, tags = run.info.run_id, run.data.tags
    assert run.info.status == "FINISHED"
    model_dir = only_dir(root, "model")
    serving, model_run = str(model_dir / "Format-Serving"), str(root / "Trainer" / "model_run" / model_dir.name)

    # The model, by reference: two small artifacts and two tags, no copy of the SavedModel.
    artifacts = sorted(f.path for f in client.list_artifacts(run_id, "model"))
    assert artifacts == ["model/model_reference.json", "model/signature.json"], artifacts
    local = Path(client.download_artifacts(run_id, "model", str(tmp_path / "dl")))
    reference = _read(local / "model_reference.json")
    assert reference["serving_model_uri"] == serving == tags["trainer_runtime.serving_model_uri"]
    assert reference["model_run_uri"] == model_run == tags["trainer_runtime.model_run_uri"]
    signature = _read(local / "signature.json")["signatures"]["serving_default"]
    assert [t["dtype"] for t in signature["inputs"].values()] == ["string"], signature
    assert signature["outputs"] and all(t["shape"] for t in signature["outputs"].values())

    # The registry version: source is the model reference (a local SavedModel path is refused by
    # the server), tagged with where it came from; its number is in the status and info files.
    version = client.get_model_version(model_name, "1")
    assert version.run_id == run_id and version.source.endswith(f"{run_id}/artifacts/model") or \
        version.source == f"runs:/{run_id}/model", version.source
    assert version.tags["trainer_runtime.serving_model_uri"] == serving
    assert version.tags["tfx.pipeline"] == tags["tfx.pipeline"]
    assert version.tags["tfx.pipeline_run_id"] == tags["tfx.pipeline_run_id"]
    status = _read(status_dir(root) / "mlflow_status.json")
    info = _read(status_dir(root) / "mlflow_info.json")
    assert status["stage"] == "completed" and status["model"]["state"] == "recorded"
    assert status["model_registry"]["state"] == "registered" and status["model_registry"]["version"] == "1"
    assert info["model_version"] == {"name": model_name, "version": "1", "source": version.source}

    # Data lineage: the Examples with their splits and TFX artifact id, the hyperparameters.
    datasets = _datasets(run)
    assert set(datasets) == {"examples", "hyperparameters"}, datasets
    examples = datasets["examples"]
    assert [examples["source"]["uri"]] == [str(p) for p in root.glob("CsvExampleGen/examples/*")]
    assert examples["profile"]["splits"] == ["train", "eval"] and examples["profile"]["tfx_type"] == "Examples"
    assert examples["source"]["tfx_artifact_id"] == examples["profile"]["tfx_artifact_id"] > 0
    assert status["datasets"] == {"state": "logged", "names": ["examples", "hyperparameters"]}
    # The Tuner's best hyperparameters (its real file format) as hp.* params.
    assert {k: float(v) for k, v in run.data.params.items() if k.startswith("hp.")} == \
        {f"hp.{k}": float(v) for k, v in HPARAMS.items()}

    # System metrics, MLflow's names, sampled every second through the run's own logger.
    cpu = client.get_metric_history(run_id, "system/cpu_utilization_percentage")
    assert len(cpu) >= 2 and [m.step for m in cpu] == list(range(len(cpu)))
    for name in ("system/system_memory_usage_megabytes", "system/disk_usage_percentage",
                 "system/network_receive_megabytes"):
        assert name in run.data.metrics, name
    assert status["system_metrics"]["samples"] == len(cpu) and status["logging"]["pending"] == 0
    MEASUREMENTS.append(f"model step (reference, signature, registry version) on a healthy server: "
                        f"{status['model']['seconds']:.2f}s; {len(cpu)} system-metrics samples at 1 s")


def test_registry_missing_on_the_server_warns_and_training_completes(fault_proxy, interactions, tmp_path,
                                                                       tmp_env, caplog):
    """Through the run_fn shim (the stock executor): a proxy answers MLflow's 404 on the registry's API."""
    fault_proxy.control.set(status=404, status_path="/api/2.0/mlflow/registered-models/",
                            status_body=json.dumps({"error_code": "ENDPOINT_NOT_FOUND",
                                                    "message": "No API route for the registry"}))
    experiment, root = _run_pipeline(tmp_path, interactions, fault_proxy.url,
                                     {"register_model_name": "never-registered", "system_metrics_interval": 0},
                                     tracked=False)
    status = _read(status_dir(root) / "mlflow_status.json")
    assert status["stage"] == "completed" and status["exit_code"] == 0
    registry = status["model_registry"]
    assert registry["state"] == "unavailable" and "no Model Registry" in registry["reason"], registry
    assert "model_version" not in _read(status_dir(root) / "mlflow_info.json")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "not registered" in r.getMessage()]
    assert len(warnings) == 1 and "ENDPOINT_NOT_FOUND" in warnings[0] and "backend-store-uri" in warnings[0]
    assert "system_metrics" not in status
    _, run = mlflow_run(fault_proxy.url, experiment)
    assert run.info.status == "FINISHED" and status["model"]["state"] == "recorded"
    assert set(_datasets(run)) == {"examples", "hyperparameters"}, "the shim finds the stock executor's inputs"


def test_server_gone_when_training_ends_costs_the_model_step_seconds(fault_proxy, tmp_path, tmp_env):
    """The server stops answering (requests hang) right as run_fn returns: the model step gives up within
    its budget, the training still counts as completed, the status says what was not recorded."""
    from trainer_runtime.core.config import load_config
    from trainer_runtime.tfx.tracked import train_tracked

    runtime = {"tracking_uri": fault_proxy.url, "experiment_name": f"gone-{uuid.uuid4().hex[:6]}",
               "register_model_name": "gone", "model_record_timeout": 3, "request_timeout": 2,
               "flush_timeout": 3, "system_metrics_interval": 0}
    fn_args = SimpleNamespace(serving_model_dir=str(tmp_path / "serving"), model_run_dir=str(tmp_path / "model_run"),
                              train_steps=1, eval_steps=1, hyperparameters=None, train_files=[], eval_files=[],
                              custom_config={"trainer_runtime": runtime})
    ended: list[float] = []

    def run_fn(_):
        Path(fn_args.serving_model_dir).mkdir()
        fault_proxy.control.set(latency=120)
        ended.append(time.monotonic())

    train_tracked(lambda: load_config({}, fn_args.custom_config), lambda: run_fn, fn_args)
    after_training = time.monotonic() - ended[0]
    status = _read(Path(str(tmp_path / "model_run") + "-mlflow") / "mlflow_status.json")
    assert status["stage"] == "completed" and status["exit_code"] == 0
    assert status["model"]["state"] in ("failed", "timeout") and status["model"]["seconds"] <= 3.5, status["model"]
    assert status["model_registry"]["state"] in ("failed", "timeout"), status["model_registry"]
    assert status["tracking"]["state"] == "degraded"
    # the model step (3 s) and the close (3 s), not MLflow's minutes of hidden retries
    assert after_training < 12, after_training
    MEASUREMENTS.append(f"server hanging from the end of training: model step {status['model']['seconds']:.1f}s, "
                        f"run_fn return to train_tracked return {after_training:.1f}s (budgets 3 s + close 3 s)")


def test_vertex_console_url_from_the_task_environment():
    """The env a Vertex pipeline task has (faked: no Vertex here) and the executor context's path."""
    from tfx.dsl.components.base.base_executor import BaseExecutor

    from trainer_runtime.tfx import links
    from trainer_runtime.core.config import load_config
    from trainer_runtime.tfx import context

    ctx = BaseExecutor.Context(tmp_dir="gs://b/root/123/recommender-20261123/Trainer_abc123/.temp",
                               unique_id="Trainer_abc123")
    tags = context.tags_for(ctx)
    config = load_config({}, {"trainer_runtime": {"tracking_uri": "https://m", "image_digest": "sha256:ab12"}})
    env = {"CLOUD_ML_PROJECT_ID": "my-proj", "CLOUD_ML_REGION": "europe-west4"}
    assert links.start_tags(config, tags, env) == {
        "trainer_runtime.vertex_pipeline_url": "https://console.cloud.google.com/vertex-ai/locations/europe-west4/"
                                               "pipelines/runs/recommender-20261123?project=my-proj",
        "trainer_runtime.image_digest": "sha256:ab12"}
    assert links.start_tags(config, tags, {"CLOUD_ML_PROJECT_ID": "my-proj"}) == \
        {"trainer_runtime.image_digest": "sha256:ab12"}, "no region, no URL"
    off = load_config({}, {"trainer_runtime": {"tracking_uri": "https://m", "link_tags": False}})
    assert links.start_tags(off, tags, env) == {}


def test_a_remote_savedmodel_is_the_version_source(mlflow_server):
    """On GCS (every Vertex pipeline), the registered version's source is the SavedModel's own URI."""
    from mlflow import MlflowClient

    from trainer_runtime.tracking.rest import MlflowRest
    from trainer_runtime.tfx.model_record import register

    client = MlflowClient(mlflow_server.url)
    run_id = client.create_run(client.create_experiment(f"remote-{uuid.uuid4().hex[:6]}")).info.run_id
    uri = "gs://bucket/root/Trainer/model/7/Format-Serving"
    name = f"remote-{uuid.uuid4().hex[:6]}"
    result = register(MlflowRest(mlflow_server.url, 5), name, run_id, uri, {"tfx.pipeline": "p"})
    assert result["state"] == "registered" and result["source"] == uri
    version = client.get_model_version(name, result["version"])
    assert version.source == uri and version.run_id == run_id and version.tags["tfx.pipeline"] == "p"
