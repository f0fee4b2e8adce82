"""A run whose server is down at the end ends degraded, with its spool beside the status;
`replay` lands it exactly once, locally and on gs:// (the storage emulator)."""
from __future__ import annotations

import io
import json
import time
import uuid

import pytest

from tests.runtime.helpers import deps, read_json, timed
from trainer_runtime.core.config import load_config
from trainer_runtime.commands.replay import replay
from trainer_runtime.run.session import run_tracked


def _degraded_run(proxy, status_dir: str, env_extra: dict | None = None):
    env = {"MLFLOW_TRACKING_URI": proxy.url, "MLFLOW_EXPERIMENT_NAME": f"rp-{uuid.uuid4().hex[:8]}",
           "TRAINER_RUNTIME_STATUS_DIR": status_dir, "TRAINER_RUNTIME_FLUSH_TIMEOUT": "3",
           **(env_extra or {})}

    returned = []

    def train(ctx):
        for step in range(3):
            ctx.logger.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 10}, step)
        assert ctx.logger.flush(30)
        proxy.control.set(drop=True)  # down from here to the end of the run
        for step in range(3, 8):
            ctx.logger.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 10}, step)
        ctx.logger.log_params({"batch": 64})
        returned.append(time.monotonic())
        return ctx.run_id

    run_id, exc, _ = timed(run_tracked, lambda: load_config(env), train, deps=deps(env))
    assert exc is None, exc
    return run_id, time.monotonic() - returned[0]


def _history(url, run_id):
    from mlflow import MlflowClient

    client = MlflowClient(url)
    return {key: sorted(m.step for m in client.get_metric_history(run_id, key)) for key in ("loss", "acc")}


def test_down_to_the_end_then_replay_twice(fault_proxy, mlflow_server, tmp_path, clean_env):
    run_id, seconds = _degraded_run(fault_proxy, str(tmp_path))
    assert seconds < 3 + 2, "the close stays inside flush_timeout (+2 s)"
    status = read_json(tmp_path / "mlflow_status.json")
    assert status["stage"] == "completed" and status["exit_code"] == 0, "training succeeded"
    tracking, counts = status["tracking"], status["logging"]
    assert tracking["state"] == "degraded" and tracking["pending"] == 11 and not tracking["run_closed"]
    assert tracking["spool_uri"] == str(tmp_path / "mlflow_spool.jsonl")
    assert tracking["replay_command"] == f"trainer-runtime replay {tmp_path}"
    assert counts["accepted"] == counts["sent"] + counts["pending"] + sum(counts["rejected"].values())
    assert _history(mlflow_server.url, run_id) == {"loss": [0, 1, 2], "acc": [0, 1, 2]}

    fault_proxy.control.set(drop=False)
    out = io.StringIO()
    assert replay(str(tmp_path), {}, out) == 0, out.getvalue()
    assert "replayed 11 of 11 pending points" in out.getvalue()
    steps = list(range(8))
    assert _history(mlflow_server.url, run_id) == {"loss": steps, "acc": steps}
    from mlflow import MlflowClient

    run = MlflowClient(mlflow_server.url).get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params["batch"] == "64"
    after = read_json(tmp_path / "mlflow_status.json")
    assert after["tracking"]["state"] == "replayed" and after["tracking"]["pending"] == 0

    out = io.StringIO()
    assert replay(str(tmp_path), {}, out) == 0
    assert "nothing to replay" in out.getvalue()
    assert _history(mlflow_server.url, run_id) == {"loss": steps, "acc": steps}, "a second replay adds nothing"


def test_replay_while_the_server_is_still_down_says_so(fault_proxy, tmp_path, clean_env):
    _degraded_run(fault_proxy, str(tmp_path))
    out = io.StringIO()
    assert replay(str(tmp_path), {}, out, timeout=2) == 1
    assert "replay incomplete: 11 points and the run end still pending" in out.getvalue()
    assert read_json(tmp_path / "mlflow_status.json")["tracking"]["pending"] == 11


def test_replay_from_gcs(fault_proxy, mlflow_server, gcs, clean_env):
    prefix = f"runs/{uuid.uuid4().hex[:8]}"
    run_id, _ = _degraded_run(fault_proxy, f"gs://{gcs}/{prefix}")
    fault_proxy.control.set(drop=False)
    from google.cloud import storage

    bucket = storage.Client(project="test-project").bucket(gcs)
    status = json.loads(bucket.blob(f"{prefix}/mlflow_status.json").download_as_text())
    assert status["tracking"]["spool_uri"] == f"gs://{gcs}/{prefix}/mlflow_spool.jsonl"
    out = io.StringIO()
    assert replay(f"gs://{gcs}/{prefix}", {}, out) == 0, out.getvalue()
    steps = list(range(8))
    assert _history(mlflow_server.url, run_id) == {"loss": steps, "acc": steps}
    assert bucket.blob(f"{prefix}/mlflow_spool.acked").download_as_text().split()[-1] == "18", "acknowledged through the end record"
    assert replay(f"gs://{gcs}/{prefix}", {}, io.StringIO()) == 0
    assert _history(mlflow_server.url, run_id) == {"loss": steps, "acc": steps}


def test_replay_without_a_spool_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match="mlflow_spool.jsonl"):
        replay(str(tmp_path), {}, io.StringIO())
