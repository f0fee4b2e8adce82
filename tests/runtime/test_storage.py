"""Status storage: GCS writes survive transient 503s within a deadline; files, reads and listings.

The 503s are real HTTP answers from tests/harness/gcs_fault_proxy.py in front of
the storage emulator (which cannot inject faults itself).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.runtime.helpers import timed
from trainer_runtime.core.errors import StatusWriteError
from trainer_runtime.status.storage import GcsDir, LocalDir

REPO = Path(__file__).resolve().parents[2]


def _prefix() -> str:
    return f"storage/{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("failures", [1, 2])
def test_gcs_write_survives_transient_503s(failures, gcs, gcs_faults):
    gcs_faults.control.set(fail_next=failures)
    target = GcsDir(f"gs://{gcs}/{_prefix()}")
    where, exc, seconds = timed(target.write_text, "mlflow_status.json", '{"stage": "initializing"}')
    assert exc is None, exc
    stats = gcs_faults.control.stats()
    assert stats["failed"] == failures and stats["matched"] == failures + 1
    assert json.loads(target.read_text("mlflow_status.json")) == {"stage": "initializing"}
    assert where.endswith("/mlflow_status.json") and seconds < 10


def test_gcs_write_that_keeps_failing_ends_within_its_deadline(gcs, gcs_faults):
    gcs_faults.control.set(fail_always=True)
    _, exc, seconds = timed(GcsDir(f"gs://{gcs}/{_prefix()}").write_text, "mlflow_status.json", "{}",
                            deadline=3.0)
    assert isinstance(exc, StatusWriteError) and exc.exit_code == 15
    assert "still failing after" in exc.message and "503" in exc.message
    assert gcs_faults.control.stats()["failed"] >= 2, "it retried"
    assert seconds < 3.0 + 1.0


def test_a_hanging_gcs_cannot_outlive_the_deadline(gcs, gcs_faults):
    """Requests that never answer are cut at the deadline too, not only the sleeps between them."""
    gcs_faults.control.set(fail_always=True, hang_seconds=20)
    _, exc, seconds = timed(GcsDir(f"gs://{gcs}/{_prefix()}").write_text, "mlflow_status.json", "{}",
                            deadline=2.0)
    assert isinstance(exc, StatusWriteError)
    assert seconds < 2.0 + 1.0


def test_a_missing_bucket_fails_at_once(gcs):
    _, exc, seconds = timed(GcsDir("gs://no-such-bucket/x").write_text, "a.json", "{}", deadline=30)
    assert isinstance(exc, StatusWriteError) and "not found" in exc.message
    assert seconds < 5


def test_gcs_write_file_read_and_list(gcs, gcs_faults, tmp_path):
    spool = tmp_path / "spool.jsonl"
    spool.write_text("".join(json.dumps({"i": i, "pad": "x" * 100}) + "\n" for i in range(20000)))
    target = GcsDir(f"gs://{gcs}/{_prefix()}")
    gcs_faults.control.set(fail_next=1)
    where = target.write_file("spool.jsonl", str(spool))
    target.write_text("mlflow_status.json", "{}")
    assert where == f"{target.describe()}/spool.jsonl"
    assert gcs_faults.control.stats()["failed"] == 1
    assert target.read_text("spool.jsonl") == spool.read_text()
    assert target.list_names() == ["mlflow_status.json", "spool.jsonl"]
    assert target.list_names("mlflow_") == ["mlflow_status.json"]
    with pytest.raises(FileNotFoundError, match="mlflow_info.json"):
        target.read_text("mlflow_info.json")
    assert GcsDir(f"gs://{gcs}/nothing-here-{uuid.uuid4().hex[:6]}").list_names() == []


@pytest.mark.status_files_unchecked("a storage test: what it writes under the status file's name is no status")
def test_local_write_file_read_and_list(tmp_path):
    spool = tmp_path / "spool.jsonl"
    spool.write_text('{"i": 1}\n' * 1000)
    target = LocalDir(str(tmp_path / "status"))
    target.write_file("spool.jsonl", str(spool))
    target.write_text("mlflow_status.json", "{}")
    assert target.read_text("spool.jsonl") == spool.read_text()
    assert target.list_names() == ["mlflow_status.json", "spool.jsonl"]
    assert target.list_names("spool") == ["spool.jsonl"]
    assert sorted(os.listdir(tmp_path / "status")) == ["mlflow_status.json", "spool.jsonl"], "no temp files"
    with pytest.raises(FileNotFoundError):
        target.read_text("mlflow_info.json")
    assert LocalDir(str(tmp_path / "absent")).list_names() == []


def test_a_503_on_the_first_status_write_no_longer_ends_the_job(mlflow_server, gcs, gcs_faults, tmp_path):
    """The issue's exit-15 path, as a whole standalone run: one 503 on `initializing` is retried."""
    (tmp_path / "user_mod.py").write_text("def main():\n    print('trained')\n")
    prefix = _prefix()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TRAINER_RUNTIME_"))}
    env.update(PYTHONPATH=str(tmp_path), MLFLOW_TRACKING_URI=mlflow_server.url,
               MLFLOW_EXPERIMENT_NAME=f"gcs503-{uuid.uuid4().hex[:6]}",
               TRAINER_RUNTIME_STATUS_DIR=f"gs://{gcs}/{prefix}")
    gcs_faults.control.set(fail_next=1)
    out = subprocess.run([sys.executable, str(REPO / "entrypoint.py"), "run", "user_mod:main"], env=env,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    assert gcs_faults.control.stats()["failed"] == 1
    status = json.loads(GcsDir(f"gs://{gcs}/{prefix}").read_text("mlflow_status.json"))
    assert status["stage"] == "completed"
