"""The fault suite's row checks (tests/faults/checks.py) fed fabricated rows: each passes a row shaped as
docs/reliability.md's table has it, and fails, naming what is wrong, when one piece is wrong or missing.
Nothing here starts a trainer or a server (the suite's `rows` fixture is not used)."""
from __future__ import annotations

import dataclasses
import json

import pytest

from tests.faults import checks
from tests.faults.runner import Row, Scenario
from tests.faults.scenarios import scenarios

SCENARIOS = {(s.name, s.tracker): s for s in scenarios()}


def _logging(accepted: int, sent: int, pending: int = 0, **rejected: int) -> dict:
    return {"accepted": accepted, "sent": sent, "pending": pending, "rejected": rejected}


#: one row of each outcome, with the values of the committed table
GOOD = {
    "healthy": Row("healthy", "trainer-runtime", "standalone", expected=12, on_server=12, close_s=0.1, exit_s=1.0,
                   stage="completed", exit_code=0, tracking="ok", run_status="FINISHED", run_id="r1",
                   status={"stage": "completed", "logging": _logging(12, 12)}),
    "down from epoch 2 to the end": Row(
        "down from epoch 2 to the end", "trainer-runtime", "standalone", expected=16, on_server=2, in_spool=14,
        close_s=17.0, exit_s=19.0, stage="completed", exit_code=0, tracking="degraded", run_status="RUNNING",
        run_id="r2", status={"stage": "completed", "logging": _logging(16, 2, 14)}),
    "SIGTERM healthy (standalone)": Row(
        "SIGTERM healthy (standalone)", "trainer-runtime", "standalone", expected=6, on_server=6, close_s=0.1,
        exit_s=0.1, stage="killed", exit_code=143, tracking="ok", run_status="KILLED", run_id="r3",
        status={"stage": "killed", "logging": _logging(6, 6)}),
    "down throughout": Row("down throughout", "trainer-runtime", "standalone", stage="failed", exit_code=10,
                           status={"stage": "failed", "exit_code": 10}),
    "SIGKILL at epoch 5": Row("SIGKILL at epoch 5", "trainer-runtime", "standalone", expected=10, on_server=10,
                              exit_s=0.1, stage="training", exit_code=-9, tracking="ok", run_status="RUNNING",
                              run_id="r4", status={"stage": "training", "tracking": {"state": "ok"}}),
}


def _broken(name: str, **changes) -> Row:
    return dataclasses.replace(GOOD[name], **changes)


@pytest.mark.parametrize("name", sorted(GOOD))
def test_a_row_as_the_table_has_it_passes(name):
    checks.check_runtime_row(GOOD[name], SCENARIOS[name, "runtime"])


@pytest.mark.parametrize("name,changes,match", [
    ("healthy", {"status": None, "stage": None}, "no status file was read"),
    ("healthy", {"notes": ["driver: TimeoutError: healthy: no epoch 1 after 300s"]}, "driver"),
    ("healthy", {"tracking": None}, "tracking None, expected 'ok'"),
    ("healthy", {"close_s": None}, "the status of a closed run gives no close_seconds"),
    ("healthy", {"close_s": 30.0}, r"closed in 30.0s, budget 20.0s: tracking \{\}; close_s 30.0"),
    ("healthy", {"status": {"stage": "completed"}}, "the status of a closed run has no logging counts"),
    ("healthy", {"status": {"stage": "completed", "logging": _logging(12, 11)}}, "'accepted': 12"),
    ("healthy", {"run_status": "RUNNING"}, r"the run is RUNNING \(completed, tracking ok\)"),
    ("healthy", {"lost": 1}, "lost=1"),
    ("down from epoch 2 to the end", {"in_spool": 13}, r"\(13, 2, 16\)"),
    ("SIGTERM healthy (standalone)", {"exit_s": None}, "no exit time measured from the signal"),
    ("SIGTERM healthy (standalone)", {"exit_s": 40.0}, "exits inside the grace"),
    ("down throughout", {"run_id": "orphan", "run_status": "RUNNING"}, r"a run \(orphan, RUNNING\) after a failed"),
    ("down throughout", {"expected": 4}, "the user's code ran"),
    ("SIGKILL at epoch 5", {"close_s": 3.0}, "no close happened"),
    ("SIGKILL at epoch 5", {"run_status": "FINISHED"}, "the run is FINISHED after a SIGKILL"),
    ("down from epoch 2 to the end", {"run_status": "FINISHED"}, "the run is FINISHED with its end in the spool"),
])
def test_a_row_with_a_piece_wrong_or_missing_fails(name, changes, match):
    with pytest.raises(AssertionError, match=match):
        checks.check_runtime_row(_broken(name, **changes), SCENARIOS[name, "runtime"])


def test_a_scenario_without_a_tracking_expectation_for_a_closed_run_fails():
    sc = Scenario("made up", expect=dict(stage="completed", exit_code=0))
    with pytest.raises(AssertionError, match="needs a tracking expectation"):
        checks.check_runtime_row(GOOD["healthy"], sc)


def test_every_comparison_scenario_trains_what_its_runtime_twin_trains():
    compared = [sc for (name, tracker), sc in SCENARIOS.items() if tracker == "mlflow"]
    assert len(compared) >= 10
    for sc in compared:
        checks.check_twin(sc, SCENARIOS.get((sc.name, "runtime")))


CALLBACK = Row("outage 10 s mid-training", "MLflow MlflowCallback", "standalone", expected=40, on_server=40,
               close_s=2.9, exit_s=2.9, exit_code=0, run_status="FINISHED", run_id="m1")


@pytest.mark.parametrize("changes,twin,match", [
    ({}, "same", None),
    ({"on_server": 0, "lost": 40}, "same", "none of the 40 points the fit produced is on run m1"),
    ({"run_id": None}, "same", "no MLflow run"),
    ({"expected": 0, "on_server": 0}, "same", "the fit marked no epoch"),
    ({"notes": ["driver: RuntimeError: the trainer exited (1) while waiting for epoch 1"]}, "same", "driver"),
    ({}, None, "no runtime row runs the same scenario"),
    ({}, "longer", "the runtime row of the same name runs"),
])
def test_a_comparison_row(changes, twin, match):
    sc = SCENARIOS["outage 10 s mid-training", "mlflow"]
    same = SCENARIOS["outage 10 s mid-training", "runtime"]
    twin_sc = {"same": same, None: None, "longer": dataclasses.replace(same, epochs=same.epochs + 1)}[twin]
    row = dataclasses.replace(CALLBACK, **changes)
    if match is None:
        checks.check_comparison_row(row, sc, twin_sc)
    else:
        with pytest.raises(AssertionError, match=match):
            checks.check_comparison_row(row, sc, twin_sc)


#: a status and an info file as the runtime writes them at a healthy row's end
STATUS = {"schema_version": 2, "stage": "completed", "timestamps": {"completed": "2026-01-02T03:04:05.678Z"},
          "run_id": "r1", "experiment_name": "faults", "experiment_id": "1",
          "run_url": "http://m/#/experiments/1/runs/r1", "tracking_uri": "http://m", "server_version": "3.1.0",
          "runtime_version": "0.1.0", "error": None, "exit_code": 0, "logging": _logging(12, 12),
          "tracking": {"state": "ok", "close_seconds": 0.1}}
INFO = {"run_id": "r1", "experiment_id": "1", "experiment_name": "faults", "tracking_uri": "http://m",
        "run_url": "http://m/#/experiments/1/runs/r1"}


def _left_files(tmp_path, status: str | None, info: str | None = json.dumps(INFO),
                others: dict[str, str] | None = None) -> list[str]:
    folder = tmp_path / "healthy" / "status"
    folder.mkdir(parents=True)
    files = []
    for name, text in (("mlflow_status.json", status), ("mlflow_info.json", info), *(others or {}).items()):
        if text is not None:
            (folder / name).write_text(text)
            files.append(str(folder / name))
    (folder.parent / "stderr.log").write_text("")
    return files + [str(folder.parent / "stderr.log")]


def _status_rows(files: list[str]) -> tuple[dict, dict]:
    key = "healthy [runtime]"
    return {key: dataclasses.replace(GOOD["healthy"], files=files)}, {key: SCENARIOS["healthy", "runtime"]}


def test_the_status_files_checked_are_counted_with_their_stages(tmp_path):
    rows, scs = _status_rows(_left_files(tmp_path, json.dumps(STATUS)))
    assert checks.check_status_files(rows, scs) == ({"mlflow_status.json": 1, "mlflow_info.json": 1},
                                                    {"completed": 1, "tracking ok": 1, "info": 1})


def _without(name: str) -> dict:
    return {k: v for k, v in STATUS.items() if k != name}


@pytest.mark.status_files_unchecked("broken on purpose: the fault suite's own check must refuse them")
@pytest.mark.parametrize("status,info,match", [
    pytest.param(json.dumps({**STATUS, "loss": float("nan")}), None, "mlflow_status.json: a bare NaN: not strict JSON",
                 id="bare NaN"),
    pytest.param(json.dumps(STATUS), json.dumps({**INFO, "value": float("inf")}), "mlflow_info.json: a bare Infinity",
                 id="bare Infinity"),
    pytest.param(json.dumps(STATUS)[:-1], None, "mlflow_status.json: Expecting", id="truncated"),
    pytest.param(None, None, "healthy \\[runtime\\]: 0 status files in its status folder", id="missing"),
    pytest.param(json.dumps({**STATUS, "stage": "training"}), None, "'training', 'completed'", id="other stage"),
    pytest.param(json.dumps(_without("runtime_version")), None,
                 "mlflow_status.json is not a valid mlflow_status .*'runtime_version' is a required property",
                 id="required field missing"),
    pytest.param(json.dumps({**STATUS, "surprise": 1}), None, "'surprise' was unexpected", id="undeclared field"),
    pytest.param(json.dumps({**STATUS, "tracking": {"state": "fine"}}), None, "tracking/state: 'fine' is not one of",
                 id="unknown tracking state"),
    pytest.param(json.dumps(STATUS), json.dumps({**INFO, "run_id": None}), "mlflow_info.json is not a valid .*run_id",
                 id="info of the wrong type"),
])
def test_a_status_file_that_is_not_strict_json_valid_or_there_fails(tmp_path, status, info, match):
    rows, scs = _status_rows(_left_files(tmp_path, status, info if info is not None else json.dumps(INFO)))
    with pytest.raises(AssertionError, match=match):
        checks.check_status_files(rows, scs)


@pytest.mark.status_files_unchecked("broken on purpose: the fault suite's own check must refuse it")
def test_a_replica_status_file_is_checked_against_its_own_schema(tmp_path):
    replica = {**_without("exit_code"), "stage": "training", "timestamps": {"training": "2026-01-02T03:04:05.678Z"},
               "replica": "worker-1", "task_type": "worker", "task_index": 1, "cluster": {"worker": 2},
               "source": "TF_CONFIG"}
    del replica["logging"], replica["tracking"]
    files = _left_files(tmp_path, json.dumps(STATUS), others={"mlflow_status.worker-1.json": json.dumps(replica)})
    assert checks.check_status_files(*_status_rows(files))[1]["replica training"] == 1
    (tmp_path / "healthy" / "status" / "mlflow_status.worker-1.json").write_text(
        json.dumps({**replica, "stage": "initializing"}))
    with pytest.raises(AssertionError, match="mlflow_status.worker-1.json is not a valid mlflow_status.replica"):
        checks.check_status_files(*_status_rows(files))


def test_the_table_expects_every_ending_and_tracking_state():
    """The whole table has rows whose status files end in each stage and tracking state a platform must
    tell apart; a subset of it expects only what its rows produce."""
    assert checks.expected_labels(list(SCENARIOS.values())) >= checks.EVERY_ENDING
    assert checks.expected_labels([SCENARIOS["SIGKILL at epoch 5", "runtime"]]) == {"training", "stale", "tracking ok"}
    assert checks.expected_labels([SCENARIOS["down from epoch 2 to the end", "runtime"],
                                   SCENARIOS["down throughout", "runtime"]]) == {
        "completed", "tracking replayed", "failed"}


@pytest.mark.parametrize("lost, cell", [(0, "≤ 4"), (4, "≤ 4"), (5, 5)])
def test_a_sigkill_rows_lost_cell_is_the_asserted_bound_not_the_count(lost, cell):
    """How many epochs are in flight at a SIGKILL depends on the machine's load (0 quiet, a few loaded): the
    table's stable column shows the bound the row check asserts, so the staleness check does not compare
    the count; past the bound, the count shows (and the row check fails)."""
    from tests.faults import reliability

    row = _broken("SIGKILL at epoch 5", lost=lost, on_server=10 - lost)
    assert reliability.lost_cell(row) == cell
    assert reliability.lost_cell(_broken("healthy", lost=lost)) == lost


def test_a_failed_rows_message_leads_with_the_close_and_the_trainers_last_warnings(tmp_path):
    """A CI log's tail shows the first few hundred characters of a failure: they say how the close went."""
    log = tmp_path / "stderr.log"
    log.write_text("2026-12-07 13:01:31,874 INFO x: training\n"
                   "2026-12-07 13:01:50,001 WARNING trainer_runtime.tracking.logger: 24 points not on the server\n")
    row = _broken("healthy", tracking="degraded", files=[str(log)],
                  status={"stage": "completed", "logging": _logging(24, 0, 24),
                          "tracking": {"state": "degraded", "pending": 24, "close_seconds": 17.2, "spool_dir": "/x"}})
    with pytest.raises(AssertionError, match=r"^healthy: tracking 'degraded', expected 'ok': tracking \{'state': "
                                             r"'degraded', 'pending': 24, 'close_seconds': 17.2\}.*24 points not on"):
        checks.check_runtime_row(row, SCENARIOS["healthy", "runtime"])


def test_a_hung_trainer_is_killed_with_every_threads_stack_said(tmp_path):
    """The runner's hang net on a real hung process: SIGABRT makes Python's faulthandler write each thread's
    stack to the trainer's stderr; the note names where each thread waited."""
    import os
    import subprocess
    import sys

    from tests.faults.runner import kill_and_dump

    code = ("import threading, time\n"
            "def waits_on_the_lock(lock):\n    lock.acquire(); lock.acquire()\n"
            "threading.Thread(target=waits_on_the_lock, args=(threading.Lock(),), daemon=True).start()\n"
            "def sleeps_forever():\n    print('ready', flush=True); time.sleep(3600)\n"
            "sleeps_forever()\n")
    log = tmp_path / "stderr.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=err, text=True,
                                env={**os.environ, "PYTHONFAULTHANDLER": "1"}, start_new_session=True)
        assert proc.stdout.readline().strip() == "ready"
        said = kill_and_dump(proc, log)
    assert proc.returncode == -6
    assert "sleeps_forever (<string>:6) < <module> (<string>:7)" in said
    assert "waits_on_the_lock (<string>:3)" in said
