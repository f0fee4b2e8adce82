"""What the fault suite asserts of its rows, as functions of a row and its scenario.

tests/faults/test_faults.py calls them on the rows the scenarios produced;
tests/faults/test_row_checks.py feeds them fabricated rows (no trainer runs) to show each fails
when a piece of a row is wrong or missing. A missing piece is a failure that names it, never a skip.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from tests.faults.runner import Row, Scenario
from tests.faults.scenarios import FLUSH_TIMEOUT, GRACE, PACE, REPLAYS_THE_STATUS, SHIP
from tests.harness import status_files
from trainer_runtime.status import contract

#: stages the runtime closes a run in (its status then carries the close: counts, tracking, close_seconds)
CLOSED = ("completed", "killed")
#: the tracking state a status says when no close happened: a run refused at the preflight never had one;
#: a SIGKILLed run's status is still its `training` write, which said `ok`
UNCLOSED_TRACKING = {"failed": None, "training": "ok"}
#: the run's status on the server after a close, by stage, when tracking ended `ok`
RUN_STATUS = {"completed": "FINISHED", "killed": "KILLED"}
#: notes that mean the row did not run as designed (a SIGKILLed process writes no final status: its
#: "status exit" note is expected)
BAD_NOTES = ("driver", "after", "did not exit")
#: what the whole table's status files must include (``status_files.labels``): every way a run ends
#: here, a SIGKILLed run's stale `training`, and the tracking states a platform must tell apart
EVERY_ENDING = {"completed", "failed", "killed", "training", "stale", "tracking ok", "tracking degraded",
                "tracking replayed"}


def check_runtime_row(row: Row, sc: Scenario) -> None:
    """The runtime's outcome columns of one row: stage, exit code, tracking, the close, the points."""
    expect = sc.expect
    stage = expect["stage"]
    bad = BAD_NOTES + (() if "SIGKILL" in sc.name else ("status exit",))
    assert not [n for n in row.notes if n.startswith(bad)], row.notes
    assert row.status is not None, f"{sc.name}: no status file was read ({row.notes})"
    assert row.stage == stage, f"{sc.name}: stage {row.stage!r}, expected {stage!r}: {evidence(row)}"
    assert row.exit_code == expect["exit_code"], \
        f"{sc.name}: exit code {row.exit_code}, expected {expect['exit_code']}: {evidence(row)}"

    if "tracking" in expect:
        wanted = expect["tracking"]
    else:
        assert stage in UNCLOSED_TRACKING, f"{sc.name}: a run that ends {stage!r} needs a tracking expectation"
        wanted = UNCLOSED_TRACKING[stage]
    assert row.tracking == wanted, f"{sc.name}: tracking {row.tracking!r}, expected {wanted!r}: {evidence(row)}"

    if sc.name.startswith("SIGKILL"):
        # at most what was accepted in the last spool flush interval: here the epoch in flight
        assert row.lost <= 4, f"lost {row.lost} points; at most 2 epochs x 2 metrics may be in flight"
    elif "SIGKILL" in sc.name:  # the local spool died with the process: at most one ship interval lost
        assert row.lost <= (SHIP + 1.5) / PACE, f"lost {row.lost} points in more than one ship interval"
    else:
        assert row.lost == 0, row
    assert row.duplicates == 0

    if stage in CLOSED:
        budget = expect.get("close_budget", FLUSH_TIMEOUT if stage == "completed" else GRACE)
        assert row.close_s is not None, f"{sc.name}: the status of a closed run gives no close_seconds: {row.status}"
        assert row.close_s <= budget + 2.0, f"{sc.name}: closed in {row.close_s}s, budget {budget}s: {evidence(row)}"
        counts = row.status.get("logging")
        assert counts, f"{sc.name}: the status of a closed run has no logging counts: {row.status}"
        assert counts["accepted"] == counts["sent"] + counts["pending"] + sum(counts["rejected"].values()), counts
    else:
        assert row.close_s is None, f"{sc.name}: no close happened, yet the status gives close_seconds {row.close_s}"
    if stage == "killed":
        assert row.exit_s is not None, f"{sc.name}: no exit time measured from the signal"
        assert row.exit_s <= expect["close_budget"] + 2.0, ("exits inside the grace", row.exit_s)

    if stage == "failed":  # refused at the preflight: before any run was created, before the user's code
        assert row.run_id is None and row.run_status is None, \
            f"{sc.name}: a run ({row.run_id}, {row.run_status}) after a failed preflight"
        assert row.expected == 0, f"{sc.name}: the user's code ran ({row.expected} points) after a failed preflight"
    elif stage == "training":  # SIGKILLed: nothing ended the run
        assert row.run_status == "RUNNING", f"{sc.name}: the run is {row.run_status} after a SIGKILL"
    elif row.tracking == "ok":
        assert row.run_status == RUN_STATUS[stage], f"{sc.name}: the run is {row.run_status} ({stage}, tracking ok)"
    else:  # degraded: the run's end waits in the spool with the points the server lacks
        assert row.run_status == "RUNNING", f"{sc.name}: the run is {row.run_status} with its end in the spool"
        assert row.in_spool + row.on_server == row.expected, (row.in_spool, row.on_server, row.expected)


def evidence(row: Row) -> str:
    """What a failed row's message leads with (a CI log's tail cuts it short): the close as the status
    tells it, the counts, the row's notes, then the trainer's last warnings and errors."""
    status = row.status or {}
    tracking = {k: v for k, v in (status.get("tracking") or {}).items() if k not in ("spool_dir", "spool_uri")}
    said = []
    logs = sorted((p for p in row.files if Path(p).name == "stderr.log"), key=len)
    if logs:  # the trainer's own (the row's folder), not a Vertex task's below it
        lines = Path(logs[0]).read_text(errors="replace").splitlines()
        said = [line[:200] for line in lines if " WARNING " in line or " ERROR " in line][-4:]
    return (f"tracking {tracking}; close_s {row.close_s}; exit_s {row.exit_s}; logging {status.get('logging')}; "
            f"timestamps {status.get('timestamps')}; notes {row.notes}; the trainer's last warnings {said}")


def check_comparison_row(row: Row, sc: Scenario, twin: Scenario | None) -> None:
    """A comparison row (MLflow's own callback, or plain MLflow) ran the scenario its runtime twin ran:
    the fault was injected on its timeline, and its tracking logged the fit's points to its run. How many
    landed, and how its run ended, are MLflow's numbers: not asserted."""
    check_twin(sc, twin)
    assert not [n for n in row.notes if n.startswith(("driver", "after"))], row.notes
    assert row.run_id, f"{sc.name}: no MLflow run ({row.notes})"
    assert row.expected > 0, f"{sc.name}: the fit marked no epoch ({row.notes})"
    assert row.on_server > 0, f"{sc.name}: none of the {row.expected} points the fit produced is on run {row.run_id}"
    assert row.on_server + row.lost == row.expected and row.in_spool == 0, row


def check_twin(sc: Scenario, twin: Scenario | None) -> None:
    """A comparison scenario trains what its runtime twin trains, under the same fault before it starts."""
    assert twin is not None, f"{sc.name}: no runtime row runs the same scenario"
    assert _fit(twin) == _fit(sc), f"{sc.name}: the runtime row of the same name runs {_fit(twin)}, this {_fit(sc)}"


def _fit(sc: Scenario) -> tuple:
    """What a scenario trains, and under which fault before it starts."""
    return sc.epochs, sc.epoch_seconds, sc.loop, sc.env.get("FAULT_USER", ""), sc.faults


def has_local_status(sc: Scenario) -> bool:
    """The runtime wrote this scenario's status to a local folder (not GCS: the GCS row's is an object)."""
    return sc.tracker == "runtime" and not sc.env.get("TRAINER_RUNTIME_STATUS_DIR", "").startswith("gs://")


def check_status_files(rows: dict[str, Row], scenarios: dict[str, Scenario]) -> tuple[dict[str, int], Counter]:
    """Every status, replica status and info file the rows left parses as strict JSON and is valid against
    the contract's strict schema (``status_files.check``); every runtime row whose status is local left its
    status file, saying the stage the suite read. Returns the files checked, by name, and what they were
    (``status_files.labels``: stage, ``stale``, ``tracking <state>``), counted."""
    checked: dict[str, int] = {}
    labels: Counter = Counter()
    for key, row in rows.items():
        sc = scenarios[key]
        own = []
        for path in row.files:
            name = Path(path).name
            if contract.document_of(name) is None:
                continue
            entry = status_files.check(path)
            checked[name] = checked.get(name, 0) + 1
            labels.update(status_files.labels(name, entry))
            if name == "mlflow_status.json" and Path(path).parent.name == "status":
                own.append(entry)
        if has_local_status(sc):
            assert len(own) == 1, f"{key}: {len(own)} status files in its status folder among {row.files}"
            assert own[0].get("stage") == row.stage, (key, own[0].get("stage"), row.stage)
    return checked, labels


def expected_labels(scenarios: list[Scenario]) -> set[str]:
    """What the status files of these scenarios' runtime rows must include, from their expectations: each
    stage (a `training` one stale), and each final tracking state (`replayed` after a replay of the status)."""
    wanted = set()
    for sc in scenarios:
        if not has_local_status(sc):
            continue
        stage = sc.expect["stage"]
        wanted |= {stage, "stale"} if stage == "training" else {stage}
        tracking = "replayed" if sc.after in REPLAYS_THE_STATUS else sc.expect.get("tracking",
                                                                                  UNCLOSED_TRACKING.get(stage))
        if tracking:
            wanted.add(f"tracking {tracking}")
    return wanted
