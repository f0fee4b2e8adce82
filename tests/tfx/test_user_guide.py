"""The user guide's pipeline snippets, executed: compiled with the real KubeflowV2DagRunner, then
replayed task by task as Vertex would run them (tests/harness/vertex_local.py)."""
from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import pytest

from tests.harness.vertex_local import LocalVertex, load_spec
from tests.tfx.conftest import history_steps, mlflow_run

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
IMAGE = "us-central1-docker.pkg.dev/my-project/ml/trainer-runtime:v0.1.0"


def snippets() -> list[str]:
    text = (REPO / "docs" / "user-guide.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, re.S)


def compile_snippet(index: int, tmp_path: Path, data: Path, uri: str, monkeypatch) -> tuple[dict, str]:
    experiment = f"guide-{uuid.uuid4().hex[:8]}"
    code = (snippets()[index]
            .replace("gs://my-bucket/pipeline-root", str(tmp_path / "root"))
            .replace("gs://my-bucket/interactions", str(data))
            .replace("gs://my-bucket/code/model.py", str(REPO / "examples" / "retrieval" / "model.py"))
            .replace("https://mlflow-abc123-uc.a.run.app", uri)
            .replace('"experiment_name": "recommender"', f'"experiment_name": "{experiment}"')
            .replace('experiment_name="recommender"', f'experiment_name="{experiment}"'))
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"user-guide snippet {index}", "exec"), {})
    return load_spec(tmp_path / "recommender.json"), experiment


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TRAINER_RUNTIME_"))}


def test_guide_has_both_snippets():
    assert len(snippets()) == 2


def _assert_vertex_run(uri: str, experiment: str, trainer_run, epochs=3):
    assert trainer_run.returncode == 0, trainer_run.stderr[-4000:]
    client, run = mlflow_run(uri, experiment)
    assert run.info.status == "FINISHED"
    assert history_steps(client, run.info.run_id, "val_loss") == list(range(epochs))
    tags = run.data.tags
    assert tags["vertex.pipeline_job_id"] == "recommender-20261123120000"
    assert tags["vertex.task_name"] == "Trainer" and tags["tfx.component"] == "Trainer"
    model_run = trainer_run.executor_input["outputs"]["artifacts"]["model_run"]["artifacts"][0]["uri"]
    status = json.loads(Path(model_run + "-mlflow", "mlflow_status.json").read_text())
    assert status["stage"] == "completed" and status["run_id"] == run.info.run_id
    return run


def trainer_custom_config(spec: dict) -> dict:
    parameters = spec["root"]["dag"]["tasks"]["Trainer"]["inputs"]["parameters"]
    return json.loads(parameters["custom_config"]["runtimeValue"]["constantValue"]["stringValue"])


def test_preferred_custom_executor_spec_snippet(mlflow_server, interactions, tmp_path, monkeypatch, caplog):
    from trainer_runtime import __version__

    spec, experiment = compile_snippet(0, tmp_path, interactions, mlflow_server.url, monkeypatch)
    assert not [r for r in caplog.records if "custom_executor_spec` is deprecated" in r.getMessage()]
    assert trainer_custom_config(spec)["trainer_runtime"]["compiled_with"] == __version__
    executors = spec["deploymentSpec"]["executors"]
    trainer = executors["Trainer_executor"]["container"]
    assert trainer["image"] == IMAGE
    assert "trainer_runtime.tfx.executor.TrackedExecutor" in trainer["args"]
    assert executors["CsvExampleGen_executor"]["container"]["image"] == "gcr.io/tfx-oss-public/tfx:1.16.0"
    assert "kubeflow_v2_run_executor" in " ".join(trainer["command"]), "stock command, no entrypoint needed"

    vertex = LocalVertex(spec, tmp_path / "vertex-root")
    gen = vertex.run("CsvExampleGen", _env())
    assert gen.returncode == 0, gen.stderr[-4000:]
    trainer_run = vertex.run("Trainer", _env())
    _assert_vertex_run(mlflow_server.url, experiment, trainer_run)
    assert "compiled with trainer_runtime" not in trainer_run.stderr  # same version: no warning


def test_default_commands_snippet_wraps_only_the_trainer(mlflow_server, interactions, tmp_path, monkeypatch):
    spec, experiment = compile_snippet(1, tmp_path, interactions, mlflow_server.url, monkeypatch)
    for executor in spec["deploymentSpec"]["executors"].values():
        assert executor["container"]["command"] == ["python", "/opt/trainer-runtime/entrypoint.py"]
        assert executor["container"]["image"] == IMAGE

    vertex = LocalVertex(spec, tmp_path / "vertex-root")
    gen = vertex.run("CsvExampleGen", _env())
    assert gen.returncode == 0, gen.stderr[-4000:]
    # passed through untouched: the stock executor ran, nothing was tracked
    assert "Executor tfx.components.example_gen.csv_example_gen.executor.Executor do:" in gen.stderr
    assert not list(gen.output_file.parent.rglob("mlflow_status.json"))
    from mlflow import MlflowClient

    assert MlflowClient(mlflow_server.url).get_experiment_by_name(experiment) is None
    assert gen.outputs["examples"]["artifacts"][0]["uri"]

    trainer_run = vertex.run("Trainer", _env())
    assert "Executor trainer_runtime.tfx.executor.TrackedExecutor do:" in trainer_run.stderr
    _assert_vertex_run(mlflow_server.url, experiment, trainer_run)
