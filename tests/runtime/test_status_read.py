"""`trainer_runtime.status.read` and `list_trainings`: the typed view a platform reads, local and on gs://
(the storage emulator), replicas included; `trainer-runtime status --json` as a process."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from trainer_runtime.status import StatusNotFound, StatusView, list_trainings, read
from trainer_runtime.status.storage import GcsDir, LocalDir
from trainer_runtime.status.view import (EXIT_COMPLETED, EXIT_FAILED, EXIT_NO_STATUS, EXIT_RUNNING, EXIT_STALE,
                                         show_status)

pytestmark = pytest.mark.status_files_unchecked("hand-written status files: versions 1 and 2, unknown fields, "
                                                "broken on purpose")
REPO = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 11, 25, 1, 2, 3, tzinfo=dt.timezone.utc)
RUN_URL = "http://mlflow.example/#/experiments/3/runs/abc123"
INFO = {"run_id": "abc123", "experiment_id": "3", "experiment_name": "recommender",
        "tracking_uri": "http://mlflow.example", "run_url": RUN_URL}
ERROR = {"type": "UserCodeError", "message": "your training function raised", "hint": "fix your code",
         "fault": "user", "exit_code": 4, "traceback": "Traceback (most recent call last):\nValueError: bad shape"}
#: the keys of `status --json` (StatusView.to_json), in order: the documented, stable form
JSON_KEYS = ["found", "target", "status_file", "status_dir", "schema_version", "stage", "outcome", "finished",
             "exit_code", "attempt", "error", "run_id", "run_url", "experiment_name", "experiment_id", "tracking_uri",
             "tracking_state", "degraded", "pending", "spool_uri", "replay_command", "heartbeat_at",
             "heartbeat_interval", "heartbeat_age_seconds", "stale", "stale_reason", "progress", "logging",
             "replicas", "model_version", "timestamps", "last_update", "runtime_version", "read_at"]
REPLICA_KEYS = ["name", "status_file", "stage", "finished", "exit_code", "error", "heartbeat_at", "stale",
                "stale_reason", "unreadable"]


def _iso(when: dt.datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ago(seconds: float) -> str:
    return _iso(NOW - dt.timedelta(seconds=seconds))


def _status(stage: str, *, schema_version: int = 2, ended_ago: float = 300, **fields) -> dict:
    status = {"schema_version": schema_version, "stage": stage,
              "timestamps": {"initializing": _ago(ended_ago + 60), stage: _ago(ended_ago)},
              "run_id": "abc123", "experiment_name": "recommender", "experiment_id": "3", "run_url": RUN_URL,
              "tracking_uri": "http://mlflow.example", "runtime_version": "0.1.0", "error": None}
    return {**status, **fields}


def _training(beat_ago: float, **fields) -> dict:
    progress = {"epoch": 3, "step": 705, "points_pending": 4, "heartbeat_at": _ago(beat_ago)}
    return _status("training", heartbeat_interval=30, progress=progress, **fields)


def _replica(stage: str, name: str, **fields) -> dict:
    kind, index = name.split("-")
    return {"schema_version": 2, "stage": stage, "timestamps": {"training": _ago(900)}, "error": None,
            "replica": name, "task_type": kind, "task_index": int(index), "cluster": {"chief": 1, "worker": 3},
            **fields}


class Place:
    """A status dir to write and read: a local folder, or a prefix in the emulator's bucket."""

    def __init__(self, uri: str, directory) -> None:
        self.uri, self.directory = uri, directory

    def write(self, status: dict | None, info: dict | None = INFO, **replicas: dict) -> str:
        if status is not None:
            self.directory.write_text("mlflow_status.json", json.dumps(status))
        if info is not None:
            self.directory.write_text("mlflow_info.json", json.dumps(info))
        for name, replica in replicas.items():
            self.directory.write_text(f"mlflow_status.{name.replace('_', '-')}.json", json.dumps(replica))
        return self.uri

    def child(self, name: str) -> "Place":
        uri = f"{self.uri}/{name}"
        return Place(uri, GcsDir(uri) if uri.startswith("gs://") else LocalDir(uri))


@pytest.fixture(params=["local", "gcs"])
def place(request, tmp_path) -> Place:
    if request.param == "local":
        return Place(str(tmp_path / "model_run-mlflow"), LocalDir(str(tmp_path / "model_run-mlflow")))
    bucket = request.getfixturevalue("gcs")
    uri = f"gs://{bucket}/read/{uuid.uuid4().hex[:8]}/Trainer_1/model_run-mlflow"
    return Place(uri, GcsDir(uri))


def test_completed_with_its_run_and_model_version(place):
    info = {**INFO, "model_version": {"name": "recommender", "version": "7", "source": "gs://b/Format-Serving"}}
    status = _status("completed", exit_code=0, tracking={"state": "ok"},
                     logging={"accepted": 52, "sent": 52, "pending": 0, "rejected": {}})
    view = read(place.write(status, info), now=NOW)
    assert isinstance(view, StatusView)
    assert (view.stage, view.outcome, view.finished, view.exit_code) == ("completed", "completed", True, 0)
    assert (view.run_id, view.run_url, view.experiment_name) == ("abc123", RUN_URL, "recommender")
    assert view.status_file == f"{place.uri}/mlflow_status.json" and view.status_dir == place.uri
    assert (view.tracking_state, view.degraded, view.error, view.replicas) == ("ok", False, None, {})
    assert (view.model_version.name, view.model_version.version) == ("recommender", "7")
    assert view.last_update == NOW - dt.timedelta(seconds=300) and view.read_at == NOW
    assert not view.stale and view.logging["accepted"] == 52


@pytest.mark.parametrize("stage, exit_code", [("failed", 4), ("killed", 143)])
def test_failed_and_killed_carry_their_error(place, stage, exit_code):
    error = {**ERROR, "exit_code": exit_code}
    view = read(place.write(_status(stage, exit_code=exit_code, error=error, attempt=2)), now=NOW)
    assert (view.outcome, view.finished, view.exit_code, view.attempt) == (stage, True, exit_code, 2)
    assert (view.error.type, view.error.fault, view.error.hint) == ("UserCodeError", "user", "fix your code")
    assert view.error.traceback.endswith("ValueError: bad shape")


def test_degraded_then_replayed(place):
    tracking = {"state": "degraded", "pending": 8, "run_closed": False, "spool_uri": f"{place.uri}/mlflow_spool.jsonl",
                "replay_command": f"trainer-runtime replay {place.uri}"}
    view = read(place.write(_status("completed", exit_code=0, tracking=tracking)), now=NOW)
    assert (view.outcome, view.degraded, view.pending) == ("completed", True, 8)
    assert view.replay_command == f"trainer-runtime replay {place.uri}" and view.spool_uri.endswith("spool.jsonl")
    replayed = {**tracking, "state": "replayed", "pending": 0, "run_closed": True}
    view = read(place.write(_status("completed", exit_code=0, tracking=replayed)), now=NOW)
    assert (view.tracking_state, view.degraded, view.pending) == ("replayed", False, 0)


def test_stale_and_live_by_the_heartbeat(place):
    view = read(place.write(_training(61)), now=NOW)
    assert (view.outcome, view.stale, view.finished) == ("stale", True, False)
    assert view.stale_reason == "the last heartbeat is 61 s old (expected every 30 s)"
    assert view.heartbeat_age_seconds == pytest.approx(61) and view.heartbeat_interval == 30
    assert view.last_update == NOW - dt.timedelta(seconds=61), "the heartbeat is the latest write"
    view = read(place.uri, now=NOW - dt.timedelta(seconds=30))
    assert (view.outcome, view.stale, view.stale_reason) == ("running", False, None)
    assert view.progress["step"] == 705


def test_without_a_heartbeat_it_is_running_not_stale(place):
    view = read(place.write(_status("initializing", run_id=None, run_url=None), info=None), now=NOW)
    assert (view.outcome, view.stale, view.heartbeat_at, view.heartbeat_age_seconds) == ("running", False, None, None)
    assert view.run_id is None and view.model_version is None


def test_replicas_each_with_its_own_ending_and_stale_judgement(place):
    """The chief failed 5 min ago; worker-1 failed, worker-2 never wrote its end, worker-3 completed."""
    chief = _status("failed", exit_code=4, error=ERROR, heartbeat_interval=30)
    worker_error = {"type": "InternalError", "message": "collective op failed", "fault": "platform", "exit_code": 10}
    target = place.write(chief, worker_1=_replica("failed", "worker-1", exit_code=10, error=worker_error),
                         worker_2=_replica("training", "worker-2"),
                         worker_3=_replica("completed", "worker-3", exit_code=0))
    view = read(target, now=NOW)
    assert sorted(view.replicas) == ["worker-1", "worker-2", "worker-3"]
    one, two, three = (view.replicas[f"worker-{i}"] for i in (1, 2, 3))
    assert (one.stage, one.exit_code, one.error.type, one.error.message, one.stale) == (
        "failed", 10, "InternalError", "collective op failed", False)
    assert one.status_file == f"{place.uri}/mlflow_status.worker-1.json"
    assert (two.stage, two.finished, two.stale) == ("training", False, True)
    assert two.stale_reason == "still 'training' 5 min after the chief ended; it wrote no end of its own"
    assert (three.stage, three.stale, three.error) == ("completed", False, None)
    assert view.outcome == "failed", "a replica's staleness is its own, not the run's"


def test_a_replica_is_judged_by_its_own_heartbeat_while_the_chief_trains(place):
    progress = {"step": 3, "heartbeat_at": _ago(200)}
    place.write(_training(5), worker_1=_replica("training", "worker-1"),
                worker_2=_replica("training", "worker-2", heartbeat_interval=60, progress=progress))
    place.directory.write_text("mlflow_status.worker-3.json", "{not json")
    view = read(place.uri, now=NOW)
    assert (view.outcome, view.replicas["worker-1"].stale) == ("running", False), "no heartbeat, chief alive"
    assert view.replicas["worker-2"].stale
    assert view.replicas["worker-2"].stale_reason == "the last heartbeat is 3 min old (expected every 60 s)"
    assert view.replicas["worker-3"].stage is None and "not valid JSON" in view.replicas["worker-3"].unreadable


@pytest.mark.parametrize("schema_version", [1, 2])
def test_schema_versions_read_alike_and_unknown_fields_are_ignored(place, schema_version):
    status = _status("completed", schema_version=schema_version, exit_code=0,
                     tracking={"state": "ok", "a_future_field": [1]}, a_future_section={"x": 1},
                     model_registry={"state": "registered", "name": "recommender", "version": 3, "source": "s"},
                     error=None)
    view = read(place.write(status, {**INFO, "a_future_info": True}), now=NOW)
    assert view.schema_version == schema_version
    assert (view.outcome, view.tracking_state, view.run_url) == ("completed", "ok", RUN_URL)
    assert view.model_version.version == "3", "from the status's model_registry when the info has none"
    assert list(view.to_json()) == JSON_KEYS


def test_an_unknown_schema_version_is_refused_not_guessed_at(place):
    place.write(_status("completed", schema_version=3, exit_code=0),
                worker_1=_replica("failed", "worker-1", schema_version=3))
    with pytest.raises(StatusNotFound, match="has schema_version 3; this trainer-runtime reads 1 and 2: upgrade"):
        read(place.uri, now=NOW)
    place.write(_status("completed", exit_code=0))
    assert "schema_version 3" in read(place.uri, now=NOW).replicas["worker-1"].unreadable
    place.write({key: value for key, value in _status("completed").items() if key != "schema_version"})
    assert read(place.uri, now=NOW).outcome == "completed", "a file without one is an early version 1"


def test_to_json_has_the_documented_keys_and_plain_values(place):
    place.write(_status("failed", exit_code=4, error=ERROR),
                worker_1=_replica("failed", "worker-1", exit_code=4, error={"type": "E", "message": "m"}))
    out = read(place.uri, now=NOW).to_json()
    assert list(out) == JSON_KEYS and list(out["replicas"]["worker-1"]) == REPLICA_KEYS
    assert out["error"] == ERROR and out["read_at"] == "2026-11-25T01:02:03.000Z" and out["last_update"] == _ago(300)
    assert out["replicas"]["worker-1"]["error"] == {"type": "E", "message": "m", "hint": None, "fault": None,
                                                    "exit_code": None, "traceback": None}
    assert json.loads(json.dumps(out, allow_nan=False)) == out


def test_a_model_run_dir_finds_its_status_beside_it(tmp_path):
    model_run = tmp_path / "Trainer" / "model_run" / "7"
    Place(f"{model_run}-mlflow", LocalDir(f"{model_run}-mlflow")).write(_status("completed", exit_code=0))
    view = read(str(model_run), now=NOW)
    assert view.status_dir == f"{model_run}-mlflow" and view.target == str(model_run)


def test_nothing_readable_says_where_it_looked(place):
    with pytest.raises(StatusNotFound) as caught:
        read(place.uri, now=NOW)
    assert isinstance(caught.value, FileNotFoundError)
    assert caught.value.looked_at == (f"{place.uri}/mlflow_status.json: not found",)  # already "-mlflow"
    assert "no status found; looked at:" in str(caught.value)
    place.directory.write_text("mlflow_status.json", '{"stage": "failed"')
    with pytest.raises(StatusNotFound, match="is not valid JSON"):
        read(place.uri, now=NOW)


def test_a_model_run_with_nothing_beside_it_names_both_places(tmp_path):
    with pytest.raises(StatusNotFound) as caught:
        read(str(tmp_path / "model_run" / "7"))
    assert caught.value.looked_at == (f"{tmp_path}/model_run/7/mlflow_status.json: not found",
                                      f"{tmp_path}/model_run/7-mlflow/mlflow_status.json: not found")


def _pipeline_root(root: Place) -> dict[str, str]:
    """Three Trainer runs and a Tuner under a pipeline root, each ended at another time; and a stray file."""
    runs = {"Trainer_1/model_run-mlflow": _status("completed", exit_code=0, ended_ago=3000),
            "Trainer_2/model_run-mlflow": _status("failed", exit_code=4, error=ERROR, ended_ago=60),
            "Trainer_3/model_run-mlflow": _training(10),
            "Tuner_4/best_hyperparameters-mlflow": _status("completed", exit_code=0, ended_ago=600)}
    for where, status in runs.items():
        root.child(f"job-20261125/{where}").write(status)
    root.child("job-20261125/Trainer_5/model_run-mlflow").directory.write_text("mlflow_status.json", "[]")
    root.child("job-20261125/Trainer_1/model_run").directory.write_text("saved_model.pb", "x")
    return runs


def test_list_trainings_newest_first_with_a_limit(place):
    _pipeline_root(place)
    found = list_trainings(place.uri, limit=3, now=NOW)
    assert [(v.status_dir.split("/job-20261125/")[1], v.outcome) for v in found] == [
        ("Trainer_3/model_run-mlflow", "running"), ("Trainer_2/model_run-mlflow", "failed"),
        ("Tuner_4/best_hyperparameters-mlflow", "completed")]
    everything = list_trainings(place.uri, limit=None, now=NOW)
    assert len(everything) == 4, "the stray non-status file is left out"
    assert everything[-1].status_dir.endswith("Trainer_1/model_run-mlflow")
    assert list_trainings(f"{place.uri}/nothing-here", now=NOW) == []


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer_runtime.commands.cli", "status", *args],
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, capture_output=True,
                          text=True, timeout=120, cwd=str(REPO))


def test_status_json_through_the_command(tmp_path):
    """`status --json` as a process: one JSON object on stdout, and the exit code `status` has."""
    now = dt.datetime.now(dt.timezone.utc)
    fresh = {**_training(0), "progress": {"step": 1, "heartbeat_at": _iso(now)}}
    stale = {**_training(0), "progress": {"step": 1, "heartbeat_at": _iso(now - dt.timedelta(minutes=10))}}
    cases = {"completed": (_status("completed", exit_code=0), EXIT_COMPLETED),
             "failed": (_status("failed", exit_code=4, error=ERROR), EXIT_FAILED),
             "running": (fresh, EXIT_RUNNING), "stale": (stale, EXIT_STALE)}
    for outcome, (status, code) in cases.items():
        target = Place(str(tmp_path / outcome), LocalDir(str(tmp_path / outcome))).write(
            status, worker_1=_replica("completed", "worker-1", exit_code=0))
        done = _cli("--json", target)
        assert done.returncode == code, (outcome, done.stdout, done.stderr[-2000:])
        out = json.loads(done.stdout)
        assert list(out) == JSON_KEYS and out["outcome"] == outcome
        assert out["replicas"]["worker-1"]["stage"] == "completed"
    missing = _cli("--json", str(tmp_path / "model_run"))
    assert missing.returncode == EXIT_NO_STATUS
    out = json.loads(missing.stdout)
    assert out["found"] is False and out["looked_at"][1].endswith("model_run-mlflow/mlflow_status.json: not found")


def test_status_json_on_gcs_through_the_command(gcs):
    uri = f"gs://{gcs}/read/{uuid.uuid4().hex[:8]}/model_run-mlflow"
    Place(uri, GcsDir(uri)).write(_status("failed", exit_code=4, error=ERROR),
                                  worker_1=_replica("failed", "worker-1", exit_code=10))
    done = _cli("--json", uri, env={"STORAGE_EMULATOR_HOST": os.environ["STORAGE_EMULATOR_HOST"]})
    assert done.returncode == EXIT_FAILED, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert (out["status_file"], out["replicas"]["worker-1"]["exit_code"]) == (f"{uri}/mlflow_status.json", 10)


def test_the_person_facing_view_lists_the_replicas(place):
    import io

    place.write(_status("failed", exit_code=4, error=ERROR),
                worker_1=_replica("failed", "worker-1", exit_code=10, error={"type": "InternalError",
                                                                            "message": "collective op failed"}),
                worker_2=_replica("training", "worker-2"))
    out = io.StringIO()
    assert show_status(place.uri, out, clock=lambda: NOW) == EXIT_FAILED
    text = out.getvalue()
    assert "replicas:\n  worker-1: failed (exit code 10): InternalError: collective op failed\n" in text
    assert ("  worker-2: training; STALE: still 'training' 5 min after the chief ended; it wrote no end of its own"
            in text)
