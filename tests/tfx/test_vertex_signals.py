"""A preempted or cancelled Trainer on the Vertex path (default_commands) ends KILLED, with its status."""
from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from tests.harness.vertex_local import LocalVertex, load_spec
from tests.tfx.conftest import mlflow_run

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_sigterm_during_training_marks_the_run_killed(mlflow_server, interactions, tmp_path):
    from tfx import v1 as tfx

    from examples.retrieval.pipeline import create_pipeline

    experiment = f"sig-{uuid.uuid4().hex[:8]}"
    pipeline = create_pipeline("recommender", str(tmp_path / "root"), str(interactions), tracked=False,
                               run_fn="examples.retrieval.model.run_fn_slow",
                               custom_config={"trainer_runtime": {"tracking_uri": mlflow_server.url,
                                                                  "experiment_name": experiment}})
    tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image="img", default_commands=["python", "/opt/trainer-runtime/entrypoint.py"]),
        output_dir=str(tmp_path), output_filename="p.json").run(pipeline)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TRAINER_RUNTIME_"))}
    env["PYTHONPATH"] = str(REPO)
    vertex = LocalVertex(load_spec(tmp_path / "p.json"), tmp_path / "vertex-root")
    assert vertex.run("CsvExampleGen", env).returncode == 0

    proc, executor_input = vertex.start("Trainer", env)
    model_run = executor_input["outputs"]["artifacts"]["model_run"]["artifacts"][0]["uri"]
    status_file = Path(model_run + "-mlflow", "mlflow_status.json")
    wait_for_stage(proc, status_file, "training", timeout=180)
    time.sleep(1.0)  # into run_fn_slow; a SIGTERM any time after `training` is handled (handlers come first)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr[-3000:]
    status = json.loads(status_file.read_text())
    assert status["stage"] == "killed" and status["error"]["type"] == "Killed"
    _, run = mlflow_run(mlflow_server.url, experiment)
    assert run.info.status == "KILLED"


def wait_for_stage(proc, status_file: Path, stage: str, timeout: float) -> None:
    """Poll the status file (replaced atomically) until it says ``stage``. Fails when the process exits
    first, or when ``timeout`` passes, saying the stage it saw last."""
    seen = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if status_file.exists():
            seen = json.loads(status_file.read_text())["stage"]
            if seen == stage:
                return
        time.sleep(0.3)  # the poll's interval, not a wait for something to happen
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    raise AssertionError(f"{status_file} did not say {stage!r} within {timeout:.0f}s (last: {seen!r})")
