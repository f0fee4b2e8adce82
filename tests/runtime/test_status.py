"""Status files to a local dir and to gs:// (the real storage emulator), and unwritable places."""
from __future__ import annotations

import json
import uuid

import pytest

from tests.harness import status_files
from tests.runtime.helpers import deps, read_json, timed
from trainer_runtime.core.config import load_config
from trainer_runtime.core.errors import StatusWriteError, UserCodeError
from trainer_runtime.run.session import run_tracked
from trainer_runtime.status.reporter import StatusReporter
from trainer_runtime.status.storage import GcsDir, LocalDir
from trainer_runtime.training.user_code import call_user


def _env(uri, status_dir):
    return {"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": f"st-{uuid.uuid4().hex[:8]}",
            "TRAINER_RUNTIME_STATUS_DIR": status_dir}


def _gcs_read(bucket: str, key: str) -> dict:
    from google.cloud import storage

    return json.loads(storage.Client(project="test-project").bucket(bucket).blob(key).download_as_text())


def test_status_and_info_to_gcs_emulator(mlflow_server, gcs, clean_env):
    prefix = f"runs/{uuid.uuid4().hex[:8]}"
    env = _env(mlflow_server.url, f"gs://{gcs}/{prefix}")
    seen = {}

    def train(ctx):
        # mlflow_info.json exists as soon as the run does, before training ends
        seen["info"] = _gcs_read(gcs, f"{prefix}/mlflow_info.json")
        seen["stage"] = _gcs_read(gcs, f"{prefix}/mlflow_status.json")["stage"]

    run_tracked(lambda: load_config(env), train, deps=deps(env))
    status = _gcs_read(gcs, f"{prefix}/mlflow_status.json")
    assert seen["stage"] == "training"
    assert seen["info"]["run_id"] == status["run_id"]
    assert status["stage"] == "completed" and status["schema_version"] == 2
    # gs:// is outside tmp_path, where the autouse check looks: checked here
    assert status_files.errors("mlflow_status", status) == []
    assert status_files.errors("mlflow_info", _gcs_read(gcs, f"{prefix}/mlflow_info.json")) == []


def test_failure_in_user_code_is_recorded_locally(mlflow_server, tmp_path, clean_env):
    env = _env(mlflow_server.url, str(tmp_path))

    def boom():
        raise ValueError("bad batch shape")

    _, exc, _ = timed(run_tracked, lambda: load_config(env), lambda ctx: call_user(boom), deps=deps(env))
    assert isinstance(exc, UserCodeError) and isinstance(exc.__cause__, ValueError)
    status = read_json(tmp_path / "mlflow_status.json")
    assert status["stage"] == "failed"
    assert status["error"]["fault"] == "user" and status["exit_code"] == 4
    assert "bad batch shape" in status["error"]["message"]
    assert "raise ValueError" in status["error"]["traceback"]
    from mlflow import MlflowClient

    assert MlflowClient(mlflow_server.url).get_run(status["run_id"]).info.status == "FAILED"


@pytest.mark.parametrize("kind", ["local-not-a-dir", "gcs-missing-bucket"])
def test_unwritable_status_destination_fails_before_preflight(kind, mlflow_server, tmp_path, gcs, clean_env):
    if kind == "local-not-a-dir":
        blocker = tmp_path / "file"
        blocker.write_text("x")
        dest = str(blocker / "status")
    else:
        dest = "gs://no-such-bucket/x"
    env = _env(mlflow_server.url, dest)
    trained = []
    _, exc, seconds = timed(run_tracked, lambda: load_config(env), trained.append, deps=deps(env))
    assert isinstance(exc, StatusWriteError) and exc.exit_code == 15
    assert not trained
    assert ("not found" in exc.message) if kind.startswith("gcs") else ("cannot write" in exc.message)
    assert seconds < 10


def test_a_failing_status_write_never_hides_the_original_error(tmp_path):
    class FlakyDir(LocalDir):
        def __init__(self, path):
            super().__init__(path)
            self.writes = 0

        def write_text(self, name, text, deadline=None):
            self.writes += 1
            if self.writes > 1:
                raise StatusWriteError("disk went away", hint="-")
            return super().write_text(name, text)

    reporter = StatusReporter(FlakyDir(str(tmp_path)), "http://u")
    reporter.stage("initializing", fatal=True)
    reporter.finish("failed", {"type": "UserCodeError"})  # must not raise
    assert reporter.write_failures == ["disk went away\n  fix: -"]
    assert read_json(tmp_path / "mlflow_status.json")["stage"] == "initializing"


@pytest.mark.status_files_unchecked("a storage test: what it writes under the status file's name is no status")
def test_local_writes_are_atomic_and_leave_no_temp_files(tmp_path):
    target = LocalDir(str(tmp_path / "a" / "b"))
    for i in range(20):
        target.write_text("mlflow_status.json", json.dumps({"i": i}))
    assert [p.name for p in (tmp_path / "a" / "b").iterdir()] == ["mlflow_status.json"]
    assert read_json(tmp_path / "a" / "b" / "mlflow_status.json") == {"i": 19}


def test_gcs_dir_requires_a_bucket():
    with pytest.raises(StatusWriteError, match="no bucket"):
        GcsDir("gs:///x")
