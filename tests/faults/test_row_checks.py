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
    ("healthy", {"close_s": 30.0}, r"\(30.0, 20.0\)"),
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


def _left_files(tmp_path, status: str | None, info: str | None = '{"run_id": "r1"}') -> list[str]:
    folder = tmp_path / "healthy" / "status"
    folder.mkdir(parents=True)
    files = []
    for name, text in (("mlflow_status.json", status), ("mlflow_info.json", info)):
        if text is not None:
            (folder / name).write_text(text)
            files.append(str(folder / name))
    (folder.parent / "stderr.log").write_text("")
    return files + [str(folder.parent / "stderr.log")]


def _status_rows(files: list[str]) -> tuple[dict, dict]:
    key = "healthy [runtime]"
    return {key: dataclasses.replace(GOOD["healthy"], files=files)}, {key: SCENARIOS["healthy", "runtime"]}


def test_the_status_files_checked_are_counted_with_their_stages(tmp_path):
    rows, scs = _status_rows(_left_files(tmp_path, json.dumps({"stage": "completed"})))
    assert checks.check_status_files(rows, scs) == ({"mlflow_status.json": 1, "mlflow_info.json": 1}, {"completed"})


@pytest.mark.parametrize("status,info,match", [
    ('{"stage": "completed", "loss": NaN}', '{"run_id": "r1"}', "mlflow_status.json: a bare NaN: not strict JSON"),
    ('{"stage": "completed"}', '{"value": Infinity}', "mlflow_info.json: a bare Infinity"),
    ('{"stage": "completed"', '{"run_id": "r1"}', "mlflow_status.json: Expecting"),
    (None, '{"run_id": "r1"}', "healthy \\[runtime\\]: 0 status files in its status folder"),
    ('{"stage": "training"}', '{"run_id": "r1"}', "'training', 'completed'"),
])
def test_a_status_file_that_is_not_strict_json_or_not_there_fails(tmp_path, status, info, match):
    rows, scs = _status_rows(_left_files(tmp_path, status, info))
    with pytest.raises(AssertionError, match=match):
        checks.check_status_files(rows, scs)
