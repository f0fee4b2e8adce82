"""Both Vertex wirings, replayed locally (tests/harness/vertex_local.py): exit codes that say whose
fault it is, the user's exception printed as the user's, and the Trainer's log lines.

Each Trainer task runs as Vertex runs it, a process of its own: the preferred wiring under TFX's
stock ``kubeflow_v2_run_executor`` (TFX's process), ``default_commands`` through entrypoint.py's
forwarder (ours). One CsvExampleGen output is shared by every compiled spec.
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from tests.harness.vertex_local import LocalVertex, TaskRun, load_spec

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
RAISES = "examples.retrieval.model.run_fn_that_raises"
DEFAULT_COMMANDS = ["python", "/opt/trainer-runtime/entrypoint.py"]


def env(**extra: str) -> dict:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TRAINER_RUNTIME_", "CLOUD_ML_"))}
    return {**base, "PYTHONPATH": str(REPO), **extra}


class Wirings:
    """Compiles the example pipeline per scenario and replays its Trainer on one CsvExampleGen output."""

    def __init__(self, root: Path, data: Path) -> None:
        self.root, self.data = root, data
        self.examples: dict | None = None

    def trainer(self, *, preferred: bool, runtime: dict, run_fn: str = RAISES, job: str = "recommender",
                environ: dict | None = None, stock_command: bool = False, **pipeline_args) -> TaskRun:
        """``preferred``: TrackedExecutor under TFX's stock command; else ``default_commands`` (or,
        with ``stock_command``, the stock executor under the stock command: the run_fn shim alone)."""
        from tfx import v1 as tfx

        from examples.retrieval.pipeline import create_pipeline

        out = self.root / uuid.uuid4().hex[:8]
        pipeline = create_pipeline(job, str(out / "root"), str(self.data), tracked=preferred, run_fn=run_fn,
                                   custom_config={"epochs": 1, "trainer_runtime": runtime}, **pipeline_args)
        config = ({"default_image": "img"} if preferred or stock_command
                  else {"default_image": "img", "default_commands": DEFAULT_COMMANDS})
        tfx.orchestration.experimental.KubeflowV2DagRunner(
            config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(**config),
            output_dir=str(out), output_filename="p.json").run(pipeline)
        vertex = LocalVertex(load_spec(out / "p.json"), out / "vertex-root", job_id=f"{job}-20261123120000")
        if self.examples is None:
            gen = vertex.run("CsvExampleGen", env())
            assert gen.returncode == 0, gen.stderr[-3000:]
            self.examples = vertex.produced["CsvExampleGen"]
        vertex.produced["CsvExampleGen"] = self.examples
        return vertex.run("Trainer", environ or env())


@pytest.fixture(scope="module")
def wirings(tmp_path_factory, interactions) -> Wirings:
    return Wirings(tmp_path_factory.mktemp("wirings"), interactions)


def status_of(run: TaskRun) -> dict:
    model_run = run.executor_input["outputs"]["artifacts"]["model_run"]["artifacts"][0]["uri"]
    return json.loads(Path(model_run + "-mlflow", "mlflow_status.json").read_text())


def assert_users_exception_printed(stderr: str) -> None:
    assert "ValueError: user code failed on purpose" in stderr, stderr[-3000:]
    assert 'raise ValueError("user code failed on purpose")' in stderr, "the user's own traceback"
    assert "During handling of the above exception" not in stderr, stderr[-3000:]
    assert "Traceback (most recent call last)" in stderr


def test_preferred_wiring_exits_with_the_outcomes_code(wirings, mlflow_server):
    """TFX's own process (kubeflow_v2_run_executor) exits 4 when the user's run_fn raised, not 1."""
    run = wirings.trainer(preferred=True, runtime={"tracking_uri": mlflow_server.url})
    assert run.returncode == 4, run.stderr[-3000:]
    assert status_of(run)["exit_code"] == 4 and status_of(run)["error"]["fault"] == "user"
    assert_users_exception_printed(run.stderr)
    assert "the Trainer failed; exit code 4 (your training function raised)" in run.stderr


def test_default_commands_exits_with_the_outcomes_code_in_json(wirings, mlflow_server):
    """The forwarder's process exits 4; on GCP the error and its traceback are one JSON entry."""
    run = wirings.trainer(preferred=False, runtime={"tracking_uri": mlflow_server.url},
                          environ=env(CLOUD_ML_JOB_ID="123"))
    assert run.returncode == 4, run.stderr[-3000:]
    assert status_of(run)["exit_code"] == 4
    entries = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    failed = [e for e in entries if e["message"].startswith("the Trainer failed; exit code 4")]
    assert len(failed) == 1 and failed[0]["severity"] == "ERROR", run.stderr[-3000:]
    assert failed[0]["mlflow_run_id"] == status_of(run)["run_id"]
    assert_users_exception_printed(failed[0]["message"])
    assert "Traceback" not in "\n".join(line for line in run.stderr.splitlines() if not line.startswith("{"))
    # The forwarder set logging up before TFX loaded: Beam's import-time INFO chatter (~70 lines) is held
    # back, TFX's own lines before the run are JSON too, and the run's lines are there once.
    assert not [e for e in entries if e["logger"].startswith("apache_beam") and e["severity"] == "INFO"]
    assert any(e["message"].startswith("Executor trainer_runtime.tfx.executor.TrackedExecutor do:") for e in entries)
    for prefix in ("status: ", "MLflow run: "):
        assert len([e for e in entries if e["message"].startswith(prefix) and e["severity"] == "INFO"]) == 1, prefix


def test_platform_fault_exits_10_on_the_forwarder(wirings):
    """An unreachable tracking server is the platform's fault: exit 10, as the README's table says."""
    from tests.harness.procs import free_port

    run = wirings.trainer(preferred=False, runtime={"tracking_uri": f"http://127.0.0.1:{free_port()}",
                                                    "preflight_timeout": 2})
    assert run.returncode == 10, run.stderr[-3000:]
    assert status_of(run)["error"]["type"] == "TrackingUnavailableError"
    assert "During handling of the above exception" not in run.stderr


SHIM = "trainer_runtime.tfx.run_fn.run_fn"


def assert_shim_run(uri: str, job: str, run: TaskRun):
    """One run, in the experiment named after the pipeline, tagged and named like TrackedExecutor's."""
    import re

    from tests.tfx.conftest import mlflow_run

    assert run.returncode == 0, run.stderr[-3000:]
    client, mlflow = mlflow_run(uri, job)
    tags = mlflow.data.tags
    assert tags["tfx.component"] == "Trainer" and tags["vertex.task_name"] == "Trainer"
    assert tags["vertex.pipeline_job_id"] == f"{job}-20261123120000"
    assert re.fullmatch(rf"{job}-Trainer-\d{{8}}T\d{{6}}Z", mlflow.info.run_name), mlflow.info.run_name
    status = status_of(run)
    assert status["stage"] == "completed" and status["run_id"] == mlflow.info.run_id
    assert "val_loss" in status["final_metrics"]
    assert mlflow.data.metrics["val_loss"] == pytest.approx(status["final_metrics"]["val_loss"])
    return mlflow


def test_shim_under_default_commands_is_tracked_once(wirings, mlflow_server):
    """default_commands swaps in TrackedExecutor, which calls the shim as the user's run_fn: the shim joins
    that run (one preflight, one status writer) instead of opening a second one."""
    job = f"shim{uuid.uuid4().hex[:6]}"
    run = wirings.trainer(preferred=False, run_fn=SHIM, job=job, train_steps=6, eval_steps=1,
                          runtime={"tracking_uri": mlflow_server.url, "run_fn": "examples.retrieval.model.run_fn"})
    assert run.stderr.count("preflight ok") == 1, run.stderr[-3000:]
    assert run.stderr.count("trainer_runtime.run.chief: status: ") == 1 and "already in MLflow run" in run.stderr
    assert_shim_run(mlflow_server.url, job, run)


def test_shim_with_the_stock_command_gets_the_pipelines_tags(wirings, mlflow_server):
    """The shim alone (stock executor, stock command) finds the executor's context: same tags, experiment
    and run name as TrackedExecutor gets."""
    job = f"shim{uuid.uuid4().hex[:6]}"
    run = wirings.trainer(preferred=False, stock_command=True, run_fn=SHIM, job=job, train_steps=6, eval_steps=1,
                          runtime={"tracking_uri": mlflow_server.url, "run_fn": "examples.retrieval.model.run_fn"})
    assert "kubeflow_v2_run_executor.py" in run.stderr, "TFX's stock command ran it"
    assert_shim_run(mlflow_server.url, job, run)
