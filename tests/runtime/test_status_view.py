"""`trainer-runtime status`: status files told for a person; stale heartbeats; exit codes."""
from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from trainer_runtime.status.view import (EXIT_COMPLETED, EXIT_FAILED, EXIT_NO_STATUS, EXIT_RUNNING, EXIT_STALE,
                                         show_status)
from trainer_runtime.status.storage import GcsDir

REPO = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 11, 25, 1, 2, 3, 456000, tzinfo=dt.timezone.utc)
RUN_URL = "http://mlflow.example/#/experiments/3/runs/abc123"
INFO = {"run_id": "abc123", "experiment_id": "3", "experiment_name": "recommender",
        "tracking_uri": "http://mlflow.example", "run_url": RUN_URL}
HAND_WRITTEN = pytest.mark.status_files_unchecked("hand-written status files of schema_version 1, some broken on "
                                                  "purpose: what `status` must still read")


def _iso(when: dt.datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _status(stage: str, **fields) -> dict:
    status = {"schema_version": 1, "stage": stage, "timestamps": {stage: _iso(NOW - dt.timedelta(minutes=5))},
              "run_id": "abc123", "experiment_name": "recommender", "experiment_id": "3", "run_url": RUN_URL,
              "tracking_uri": "http://mlflow.example", "error": None}
    status.update(fields)
    return status


def _write(folder: Path, status: dict | None, info: dict | None = INFO) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if status is not None:
        (folder / "mlflow_status.json").write_text(json.dumps(status))
    if info is not None:
        (folder / "mlflow_info.json").write_text(json.dumps(info))
    return folder


def _show(target, now: dt.datetime = NOW) -> tuple[int, str]:
    out = io.StringIO()
    code = show_status(str(target), out, clock=lambda: now)
    return code, out.getvalue()


def _training(seconds_ago: float, **fields) -> dict:
    progress = {"epoch": 3, "step": 705, "points_pending": 4,
                "heartbeat_at": _iso(NOW - dt.timedelta(seconds=seconds_ago))}
    return _status("training", progress=progress, **fields)


@HAND_WRITTEN
def test_fresh_heartbeat_is_live(tmp_path):
    code, text = _show(_write(tmp_path, _training(20, heartbeat_interval=30)))
    assert code == EXIT_RUNNING
    assert "stage: training" in text and f"run: {RUN_URL}" in text
    assert "progress: epoch 3, step 705, 4 point(s) pending, heartbeat at 2026-11-25T01:01:43Z (20 s ago)" in text
    assert "live: the last heartbeat is 20 s old (expected every 30 s)" in text
    assert "STALE" not in text
    code, text = _show(_write(tmp_path / "slow", _training(400, heartbeat_interval=300)))
    assert code == EXIT_RUNNING, "the status's own interval decides, not the default 30 s"


@HAND_WRITTEN
def test_stale_heartbeat_says_what_it_probably_means(tmp_path):
    folder = _write(tmp_path, _training(61, heartbeat_interval=30))
    code, text = _show(folder)
    assert code == EXIT_STALE
    assert "STALE: the last heartbeat is 61 s old (expected every 30 s)." in text
    assert "probably killed (SIGKILL, OOM or the node was lost)" in text
    assert "MLflow run may still be RUNNING" in text
    assert f"`trainer-runtime replay {folder}`" in text
    # the same file read 30 s earlier was live: staleness is 2 x the interval, by the injected clock
    assert _show(folder, NOW - dt.timedelta(seconds=30))[0] == EXIT_RUNNING


@HAND_WRITTEN
def test_stale_uses_the_default_interval_and_reads_long_ages(tmp_path):
    code, text = _show(_write(tmp_path, _training(3 * 3600 + 120)))  # no heartbeat_interval: 30 s
    assert code == EXIT_STALE
    assert "STALE: the last heartbeat is 3 h 02 min old (expected every 30 s)." in text


@HAND_WRITTEN
@pytest.mark.parametrize("stage", ["training", "initializing"])
def test_without_heartbeat_fields_it_cannot_tell(stage, tmp_path):
    code, text = _show(_write(tmp_path, _status(stage)))
    assert code == EXIT_RUNNING
    assert "cannot tell a live run from a dead one" in text
    assert f"stage: {stage}, since 2026-11-25T00:57:03Z (5 min ago)" in text


@HAND_WRITTEN
def test_completed(tmp_path):
    status = _status("completed", exit_code=0, tracking={"state": "ok", "pending": 0},
                     logging={"accepted": 52, "sent": 51, "pending": 0, "rejected": {"invalid name": 1},
                              "renamed": 2},
                     progress={"epoch": 5, "heartbeat_at": _iso(NOW - dt.timedelta(hours=2))})
    code, text = _show(_write(tmp_path, status))
    assert code == EXIT_COMPLETED
    assert "stage: completed (exit code 0)" in text
    assert "tracking: ok" in text
    assert "logging: accepted 52, sent 51, pending 0, rejected 1 (invalid name: 1), renamed 2" in text
    assert "STALE" not in text, "a finished run is never stale"


@HAND_WRITTEN
@pytest.mark.parametrize("stage, exit_code", [("failed", 4), ("killed", 143)])
def test_failed_and_killed(stage, exit_code, tmp_path):
    error = {"type": "UserCodeError" if stage == "failed" else "Killed", "message": "your training function raised",
             "hint": "fix the error in your code", "fault": "user" if stage == "failed" else "platform",
             "exit_code": exit_code,
             "traceback": "Traceback (most recent call last):\n  File \"model.py\", line 3\nValueError: bad shape"}
    code, text = _show(_write(tmp_path, _status(stage, exit_code=exit_code, error=error, attempt=2)))
    assert code == EXIT_FAILED
    assert f"stage: {stage} (exit code {exit_code}), attempt 2" in text
    assert f"error: {error['type']} ({error['fault']} fault): your training function raised" in text
    assert "  fix: fix the error in your code" in text
    assert "    ValueError: bad shape" in text


@HAND_WRITTEN
def test_degraded_tracking_says_where_the_points_are_and_how_to_replay(tmp_path):
    tracking = {"state": "degraded", "pending": 8, "spool_uri": f"{tmp_path}/spool.jsonl",
                "replay_command": f"trainer-runtime replay {tmp_path}"}
    status = _status("completed", exit_code=0, tracking=tracking,
                     logging={"accepted": 12, "sent": 4, "pending": 8, "rejected": {}, "renamed": 0})
    code, text = _show(_write(tmp_path, status))
    assert code == EXIT_COMPLETED, "training succeeded; tracking is degraded, not failed"
    assert "tracking: degraded: 8 point(s) are not on the MLflow server" in text
    assert f"  kept in: {tmp_path}/spool.jsonl" in text
    assert f"  to land them and close the run: trainer-runtime replay {tmp_path}" in text
    assert "logging: accepted 12, sent 4, pending 8, rejected 0, renamed 0" in text


@HAND_WRITTEN
def test_no_status_says_where_it_looked(tmp_path):
    model_run = tmp_path / "Trainer" / "model_run" / "7"
    code, text = _show(model_run)
    assert code == EXIT_NO_STATUS
    assert f"{model_run}/mlflow_status.json: not found" in text
    assert f"{model_run}-mlflow/mlflow_status.json: not found" in text


@HAND_WRITTEN
def test_a_trainers_model_run_dir_finds_its_status_beside_it(tmp_path):
    model_run = tmp_path / "model_run" / "7"
    _write(Path(f"{model_run}-mlflow"), _status("completed", exit_code=0))
    code, text = _show(model_run)
    assert code == EXIT_COMPLETED and f"status: {model_run}-mlflow/mlflow_status.json" in text


@HAND_WRITTEN
def test_info_fills_in_a_status_written_before_the_run_existed_and_json_must_parse(tmp_path):
    status = _status("initializing", run_id=None, run_url=None, experiment_name=None)
    code, text = _show(_write(tmp_path / "a", status, info=None))
    assert "run: none yet" in text
    code, text = _show(_write(tmp_path / "b", status))
    assert f"run: {RUN_URL}" in text and "run_id abc123, experiment 'recommender'" in text
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "mlflow_status.json").write_text('{"stage": "failed", "error": {"message": "x?sig=***')
    code, text = _show(tmp_path / "c")
    assert code == EXIT_NO_STATUS and "is not valid JSON" in text


def test_status_on_gcs(gcs):
    prefix = f"gs://{gcs}/view/{uuid.uuid4().hex[:8]}"
    target = GcsDir(prefix)
    target.write_text("mlflow_status.json", json.dumps(_training(600, heartbeat_interval=60)))
    target.write_text("mlflow_info.json", json.dumps(INFO))
    code, text = _show(prefix)
    assert code == EXIT_STALE
    assert f"status: {prefix}/mlflow_status.json" in text and f"`trainer-runtime replay {prefix}`" in text
    code, text = _show(f"gs://{gcs}/view/nothing-{uuid.uuid4().hex[:6]}")
    assert code == EXIT_NO_STATUS and "not found" in text


def test_the_command_on_a_real_run(mlflow_server, tmp_path):
    """`trainer-runtime status` as a process, on the files a real standalone run wrote."""
    (tmp_path / "user_mod.py").write_text("def main():\n    print('trained')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TRAINER_RUNTIME_"))}
    env.update(PYTHONPATH=str(tmp_path), MLFLOW_TRACKING_URI=mlflow_server.url,
               MLFLOW_EXPERIMENT_NAME=f"view-{uuid.uuid4().hex[:6]}", TRAINER_RUNTIME_STATUS_DIR=str(tmp_path / "s"))
    entry = [sys.executable, str(REPO / "entrypoint.py")]
    run = subprocess.run([*entry, "run", "user_mod:main"], env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    out = subprocess.run([*entry, "status", str(tmp_path / "s")], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "stage: completed (exit code 0)" in out.stdout and f"{mlflow_server.url}/#/experiments/" in out.stdout
    missing = subprocess.run([*entry, "status", str(tmp_path / "nowhere")], env=env, capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == EXIT_NO_STATUS and "no status found" in missing.stdout
