"""The user guide's pipeline snippets, executed: compiled with the real KubeflowV2DagRunner, then
replayed task by task as Vertex would run them (tests/harness/vertex_local.py); and its status-reader
snippets, run against status files in the storage emulator."""
from __future__ import annotations

import ast
import importlib
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


#: the guide's pipelines, as (how the Trainer is wired, where it trains); one test below executes each
EXECUTOR, FORWARDER = "custom_executor_spec", "default_commands"
ONE_MACHINE, VERTEX_TRAINING = "single machine", "Vertex AI Training"
WIRINGS = ((EXECUTOR, ONE_MACHINE), (FORWARDER, ONE_MACHINE), (EXECUTOR, VERTEX_TRAINING), (FORWARDER, VERTEX_TRAINING))
ENTRYPOINT = 'default_commands=["python", "/opt/trainer-runtime/entrypoint.py"]'
#: what marks a python block that reads status files (for platforms) rather than wiring a Trainer
READER = "from trainer_runtime.status import"


def python_blocks(text: str | None = None) -> list[str]:
    text = (REPO / "docs" / "user-guide.md").read_text() if text is None else text
    return re.findall(r"```python\n(.*?)```", text, re.S)


def snippets(text: str | None = None) -> list[str]:
    """The guide's pipeline blocks: every python block but the status readers."""
    return [code for code in python_blocks(text) if READER not in code]


def reader_snippets(text: str | None = None) -> list[str]:
    return [code for code in python_blocks(text) if READER in code]


def wiring_of(code: str) -> tuple[str, str]:
    """What a pipeline snippet shows: the image's entrypoint as default_commands, or a tracked
    executor as custom_executor_spec; a Trainer on one machine, or launching Vertex AI Training."""
    how = [w for w, marker in ((FORWARDER, ENTRYPOINT), (EXECUTOR, "custom_executor_spec=")) if marker in code]
    where = VERTEX_TRAINING if "TRAINING_ARGS_KEY" in code else ONE_MACHINE
    assert len(how) == 1, f"a python block of the guide wires the Trainer {how or 'neither way'}:\n{code[:600]}"
    return how[0], where


def by_wiring(blocks: list[str]) -> dict[tuple[str, str], str]:
    """The guide's python blocks by wiring: each of WIRINGS exactly once, and no other block (so every
    block is one a test here executes). Each compiles, and each name it imports from trainer_runtime
    exists in the package."""
    found: dict[tuple[str, str], list[str]] = {}
    for index, code in enumerate(blocks):
        tree = ast.parse(code, f"user-guide python block {index}")
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "trainer_runtime":
                module = importlib.import_module(node.module)
                missing = [a.name for a in node.names if not hasattr(module, a.name)]
                assert not missing, f"user-guide python block {index}: {node.module} has no {missing}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "trainer_runtime":
                        importlib.import_module(alias.name)
        found.setdefault(wiring_of(code), []).append(code)
    assert sorted(found) == sorted(WIRINGS), f"the guide shows {sorted(found)}; the tests run {sorted(WIRINGS)}"
    twice = [w for w, codes in found.items() if len(codes) > 1]
    assert not twice, f"more than one python block wires {twice}: the tests here run one each"
    return {w: codes[0] for w, codes in found.items()}


def compile_snippet(wiring: tuple[str, str], tmp_path: Path, data: Path, uri: str,
                    monkeypatch) -> tuple[dict, str]:
    experiment = f"guide-{uuid.uuid4().hex[:8]}"
    code = (by_wiring(snippets())[wiring]
            .replace("gs://my-bucket/pipeline-root", str(tmp_path / "root"))
            .replace("gs://my-bucket/interactions", str(data))
            .replace("gs://my-bucket/code/model.py", str(REPO / "examples" / "retrieval" / "model.py"))
            .replace("gs://my-bucket/code/distributed_model.py", str(REPO / "examples" / "distributed" / "model.py"))
            .replace("https://mlflow-abc123-uc.a.run.app", uri)
            .replace('"experiment_name": "recommender"', f'"experiment_name": "{experiment}"')
            .replace('experiment_name="recommender"', f'experiment_name="{experiment}"'))
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"user-guide snippet {wiring}", "exec"), {})
    return load_spec(tmp_path / "recommender.json"), experiment


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TRAINER_RUNTIME_"))}


def test_every_python_block_of_the_guide_is_one_the_tests_execute():
    """Two wirings, each for the single-machine Trainer and for Vertex AI Training worker pools: every
    python block of the guide is one of them (the tests below execute each), and its trainer_runtime
    imports name what the package has."""
    by_wiring(snippets())


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

    spec, experiment = compile_snippet((EXECUTOR, ONE_MACHINE), tmp_path, interactions, mlflow_server.url, monkeypatch)
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
    spec, experiment = compile_snippet((FORWARDER, ONE_MACHINE), tmp_path, interactions, mlflow_server.url, monkeypatch)
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


class VertexTrainingReplay(LocalVertex):
    """Tasks run under the stand-in Vertex JobService (tests/harness/vertex_training.py): no Vertex API is
    reachable here, so the CustomJob a Trainer task submits is recorded and its replicas run as local processes."""

    def command_for(self, argv: list[str]) -> list[str]:
        python, *rest = super().command_for(argv)
        return [python, "-m", "tests.harness.vertex_training", *rest]


def _training_env(jobs: Path, run: bool = True) -> dict:
    from tests.harness.vertex_training import DIRECTORY_ENV, RUN_ENV

    return {**_env(), "PYTHONPATH": str(REPO), DIRECTORY_ENV: str(jobs), RUN_ENV: "1" if run else "0"}


TRACKED = "trainer_runtime.tfx.executor.TrackedExecutor"
TRACKED_LAUNCHER = "trainer_runtime.tfx.vertex_training.TrackedVertexTrainingExecutor"
RUN_KEY = "vertex-pipeline/recommender-20261123120000/Trainer"


def _assert_custom_job(jobs: Path) -> dict:
    """The one CustomJob the Trainer task submitted: the chief and 2 workers, TrackedExecutor on each."""
    from tests.harness.vertex_training import captured_jobs

    [job] = captured_jobs(jobs)
    assert job["parent"] == "projects/my-project/locations/us-central1"
    assert job["api_endpoint"] == "us-central1-aiplatform.googleapis.com"
    spec = job["custom_job"]["job_spec"]
    assert spec["service_account"] == "pipelines@my-project.iam.gserviceaccount.com"
    pools = spec["worker_pool_specs"]
    assert [int(p["replica_count"]) for p in pools] == [1, 2]
    for pool in pools:
        container = pool["container_spec"]
        assert container["image_uri"] == IMAGE
        assert container["command"][:5] == ["python", "-m", "tfx.scripts.run_executor", "--executor_class_path",
                                            TRACKED]
        assert {e["name"]: e["value"] for e in container["env"]} == {
            "TRAINER_RUNTIME_RUN_KEY": RUN_KEY, "MLFLOW_EXPERIMENT_NAME": "recommender"}
    return job


def test_vertex_training_snippet_makes_one_run_of_three_replicas(mlflow_server, interactions, tmp_path,
                                                                  monkeypatch):
    """Compiled, then the Trainer task launches its CustomJob (chief + 2 workers) and the replicas run here."""
    spec, experiment = compile_snippet((EXECUTOR, VERTEX_TRAINING), tmp_path, interactions, mlflow_server.url,
                                       monkeypatch)
    trainer = spec["deploymentSpec"]["executors"]["Trainer_executor"]["container"]
    assert trainer["image"] == IMAGE and TRACKED_LAUNCHER in trainer["args"]
    assert "kubeflow_v2_run_executor" in " ".join(trainer["command"]), "stock command, no entrypoint needed"

    vertex = VertexTrainingReplay(spec, tmp_path / "vertex-root")
    jobs = tmp_path / "jobs"
    gen = vertex.run("CsvExampleGen", _training_env(jobs))
    assert gen.returncode == 0, gen.stderr[-4000:]
    trainer_run = vertex.run("Trainer", _training_env(jobs))
    replica_logs = "\n".join(p.read_text()[-2000:] for p in sorted(jobs.rglob("*.log")))
    assert trainer_run.returncode == 0, trainer_run.stderr[-3000:] + replica_logs
    _assert_custom_job(jobs)

    client, run = mlflow_run(mlflow_server.url, experiment)
    assert run.info.status == "FINISHED"
    for key in ("loss", "top_5_accuracy", "val_loss", "val_top_5_accuracy"):
        assert history_steps(client, run.info.run_id, key) == [0, 1, 2], key
    tags = run.data.tags
    assert (tags["tf.cluster.chief"], tags["tf.cluster.workers"], tags["tf.cluster.tracked_by"]) == ("1", "2",
                                                                                                  "chief-0")
    assert tags["trainer_runtime.run_key"] == RUN_KEY and tags["trainer_runtime.tracking.attempts"] == "1"
    outputs = trainer_run.executor_input["outputs"]["artifacts"]
    status_dir = Path(outputs["model_run"]["artifacts"][0]["uri"] + "-mlflow")
    assert sorted(p.name for p in status_dir.iterdir()) == [
        "mlflow_info.json", "mlflow_status.json", "mlflow_status.worker-0.json", "mlflow_status.worker-1.json"]
    assert json.loads((status_dir / "mlflow_status.json").read_text())["run_id"] == run.info.run_id
    for name in ("worker-0", "worker-1"):
        assert json.loads((status_dir / f"mlflow_status.{name}.json").read_text())["stage"] == "completed"
    assert Path(outputs["model"]["artifacts"][0]["uri"], "Format-Serving", "saved_model.pb").exists()


def test_vertex_training_default_commands_snippet_swaps_the_launcher(mlflow_server, interactions, tmp_path,
                                                                      monkeypatch):
    """The forwarder swaps the extension's launcher for the tracked one, which submits the same CustomJob as
    above (recorded, not run: the previous test runs such a job's replicas)."""
    spec, _ = compile_snippet((FORWARDER, VERTEX_TRAINING), tmp_path, interactions, mlflow_server.url, monkeypatch)
    for executor in spec["deploymentSpec"]["executors"].values():
        assert executor["container"]["command"] == ["python", "/opt/trainer-runtime/entrypoint.py"]
    trainer = spec["deploymentSpec"]["executors"]["Trainer_executor"]["container"]
    assert "tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor" in trainer["args"]

    vertex = VertexTrainingReplay(spec, tmp_path / "vertex-root")
    jobs = tmp_path / "jobs"
    gen = vertex.run("CsvExampleGen", _training_env(jobs))
    assert gen.returncode == 0, gen.stderr[-4000:]
    trainer_run = vertex.run("Trainer", _training_env(jobs, run=False))
    assert trainer_run.returncode == 0, trainer_run.stderr[-4000:]
    assert f"with executor {TRACKED_LAUNCHER}" in trainer_run.stderr
    _assert_custom_job(jobs)


def test_the_status_reader_snippets_on_gcs(gcs, capsys):
    """The platform's side: read one run (failed, a worker failed first, tracking degraded) and list the
    last trainings under a pipeline root, newest first, on the storage emulator."""
    from trainer_runtime.status.reporter import utc_now
    from trainer_runtime.status.storage import GcsDir

    root = f"gs://{gcs}/guide/{uuid.uuid4().hex[:8]}/pipeline-root"
    job = f"{root}/123456/recommender-20261125"
    tracking = {"state": "degraded", "pending": 8, "replay_command": f"trainer-runtime replay {job}/Trainer_2/x"}
    ended = {"Trainer_1": ("completed", "2026-11-24T10:00:00.000Z", None),
             "Trainer_2": ("failed", "2026-11-25T10:00:00.000Z", {"type": "UserCodeError", "message": "bad shape",
                                                                  "hint": "fix model.py"}),
             "Trainer_3": ("training", utc_now(), None)}
    for task, (stage, at, error) in ended.items():
        status_dir = GcsDir(f"{job}/{task}/model_run-mlflow")
        status_dir.write_text("mlflow_status.json", json.dumps({
            "schema_version": 2, "stage": stage, "timestamps": {stage: at}, "error": error, "tracking": tracking,
            "exit_code": 4 if error else None, "run_url": f"https://mlflow.example/#/runs/{task}"}))
    GcsDir(f"{job}/Trainer_2/model_run-mlflow").write_text("mlflow_status.worker-1.json", json.dumps(
        {"schema_version": 2, "stage": "failed", "exit_code": 10, "replica": "worker-1"}))
    [one, latest] = reader_snippets()
    exec(compile(one.replace("gs://my-bucket/pipeline-root/…/Trainer_123/model_run", f"{job}/Trainer_2/model_run"),
                 "user-guide reader block 0", "exec"), {})
    assert capsys.readouterr().out.splitlines() == [
        "failed 4 https://mlflow.example/#/runs/Trainer_2 fix model.py",
        f"8 points are not on the server: trainer-runtime replay {job}/Trainer_2/x", "worker-1 failed 10 "]
    exec(compile(latest.replace("gs://my-bucket/pipeline-root", root), "user-guide reader block 1", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ")[1:4] for line in lines] == [
        ["running", f"{job}/Trainer_3/model_run-mlflow", ""], ["failed", f"{job}/Trainer_2/model_run-mlflow",
                                                               "UserCodeError"],
        ["completed", f"{job}/Trainer_1/model_run-mlflow", ""]]
    assert lines[1].endswith(" UserCodeError worker-1") and lines[2].startswith("2026-11-24T10:00:00+00:00 ")
