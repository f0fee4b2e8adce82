"""The fault suite: every scenario of docs/reliability.md, run concurrently, then checked row by row.

All scenarios run once per session in a thread pool
(``TR_FAULT_WORKERS``, default 8) longest first, so the suite takes about as long as its longest scenario; a
scenario marked ``alone`` (20 trainers starting at once) then runs by itself, so its load is not measured in
the timing rows beside it. Each test
below checks one row. With ``TR_WRITE_RELIABILITY=1`` (``make reliability``) the suite
rewrites docs/reliability.md; otherwise a test fails when that file is stale.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import MEASUREMENTS
from tests.faults import checks, reliability
from tests.harness import status_files
from tests.faults.runner import SECRET, Shared, run_scenario
from tests.faults.scenarios import FLUSH_TIMEOUT, PACE, SHIP, prepare, scenarios
from trainer_runtime.core import command_exits

# The session fixture runs every scenario: ~23 min alone on 2 cores, 31 min beside make test's other two
# suites (CI, stop 24), past the suite-wide 900 s default; a row that hangs takes its own hang net
# (scenarios.HANG_NET) first.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

#: development aid: TR_FAULT_ONLY="SIGTERM,healthy" runs only scenarios whose name contains one of these
ONLY = [part for part in os.environ.get("TR_FAULT_ONLY", "").split(",") if part]
SCENARIOS = [s for s in scenarios() if not ONLY or any(part in s.name for part in ONLY)]
NAMES = [f"{s.name} [{'mlflow' if s.tracker == 'mlflow' else 'runtime'}]" for s in SCENARIOS]


@pytest.fixture(scope="session")
def rows(tmp_path_factory, mlflow_server, test_keys, interactions, metadata_server, gcs_fault_proxy_server,
         gcs_emulator_server):
    from tests.conftest import BUCKET

    shared = Shared(mlflow_server.url, tmp_path_factory.mktemp("faults"), test_keys["public"],
                    interactions=interactions, metadata=metadata_server, gcs_proxy=gcs_fault_proxy_server,
                    gcs_emulator=gcs_emulator_server.url, gcs_bucket=BUCKET)
    workers = int(os.environ.get("TR_FAULT_WORKERS", "8"))
    results = Rows()
    try:
        futures = _run_all(shared, workers)
        for i in range(len(SCENARIOS)):
            try:
                results[NAMES[i]] = futures[i].result()
            except Exception as exc:  # that row's tests fail with it; every other row is still checked
                results.failed[NAMES[i]] = exc
        if os.environ.get("TR_WRITE_RELIABILITY") == "1" and not ONLY and not results.failed:
            reliability.DOC.write_text(reliability.render([results[name] for name in NAMES], FLUSH_TIMEOUT))
        yield results
    finally:  # the MLflow servers of the rows that had their own (their runs are read until the end)
        for server in shared.servers:
            server.stop()

def _run_all(shared: Shared, workers: int) -> dict:
    """Every scenario, longest first, ``workers`` at a time; then each ``alone`` one by itself."""
    ordered = sorted((i for i in range(len(SCENARIOS)) if not SCENARIOS[i].alone),
                     key=lambda i: -SCENARIOS[i].epochs * SCENARIOS[i].epoch_seconds)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {i: pool.submit(lambda s: run_scenario(prepare(s, shared), shared), SCENARIOS[i])
                   for i in ordered}
    with ThreadPoolExecutor(max_workers=1) as pool:  # then each `alone` scenario by itself
        futures.update({i: pool.submit(lambda s: run_scenario(prepare(s, shared), shared), SCENARIOS[i])
                        for i in range(len(SCENARIOS)) if SCENARIOS[i].alone})
    return futures


class RowDidNotRun(Exception):
    """A scenario raised instead of producing its row (a harness or server error): its own tests fail."""


class Rows(dict):
    """The rows that ran, by name; ``failed``: what each scenario that did not run raised. Looking up a
    failed row raises, so one scenario's error fails that row's tests, not the suite's other 100."""

    def __init__(self) -> None:
        super().__init__()
        self.failed: dict[str, BaseException] = {}

    def __missing__(self, name):
        if name in self.failed:
            raise RowDidNotRun(f"{name}: {self.failed[name]!r}") from self.failed[name]
        raise KeyError(name)


#: One user call that waited on the outage takes seconds: MLflow's client retries a refused connection at
#: once, then sleeps backoff_factor * 2 = 4 s before the next try. So a call slower than NO_WAIT_S, or
#: waits summing past SUMMED_WAIT_S, waited on the outage; anything below is the machine's own noise
#: (measured: a 0.108 s call and 0.12 s summed with two stand-in builds beside the suite on 2 cores,
#: where the bounds were 0.1 s and failed a run that lost and waited for nothing).
NO_WAIT_S = 1.0
SUMMED_WAIT_S = 2.5
#: a standalone user-code run exits this soon after its close (the fluent run's end, then the interpreter's
#: teardown of TF, both slower under load)
EXIT_AFTER_CLOSE_S = 8.0


def _scenario(name):
    return SCENARIOS[NAMES.index(name)]


@pytest.mark.parametrize("name", [n for n in NAMES if n.endswith("[runtime]")])
def test_runtime_row(rows, name):
    checks.check_runtime_row(rows[name], _scenario(name))


def _row(rows, name):
    if name not in rows and name not in rows.failed:
        pytest.skip(f"TR_FAULT_ONLY excludes {name}")
    return rows[name]


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("user code:") and n.endswith("[runtime]")])
def test_user_code_row(rows, name):
    """What user code logs through MLflow's API: no call waits on the outage, nothing is lost (on the
    server, or in the spool that replay lands exactly once), the process exits right after the close."""
    row, sc = rows[name], _scenario(name)
    user = row.extra["user"]
    if sc.expect["stage"] == "completed":
        assert user["finished"], row.notes
        assert user["longest_s"] <= NO_WAIT_S and user["stall_s"] <= SUMMED_WAIT_S, user
        assert user["artifacts_lost"] == 0, user
    else:  # signalled mid-loop: no pause between its steps came from the outage (plain MLflow: all of it)
        assert row.stall_s <= NO_WAIT_S, row.stall_s
    if "burst" in sc.env.get("FAULT_USER", ""):
        assert user["rss_growth_mb"] <= 64 + 100, user  # the spool's RAM window, plus the loop's own
    replayed = row.extra.get("replay")
    if sc.after is not None:
        assert replayed["exit_code"] == 0 and replayed["duplicates"] == 0, replayed
        assert replayed["run_status"] == {"completed": "FINISHED", "killed": "KILLED", "training": "KILLED"}[
            sc.expect["stage"]], replayed
        if "SIGKILL" in sc.name:
            assert row.expected - replayed["on_server"] <= (SHIP + 1.5) / PACE, replayed
        else:
            logged = 2 if sc.expect["stage"] == "completed" else 0  # a signalled loop never reached them
            assert replayed["on_server"] == row.expected and replayed["artifacts_on_server"] == logged, replayed
        if "replay again" in row.extra:
            assert "nothing to replay" in row.extra["replay again"]["out"], row.extra["replay again"]
    if sc.wiring == "standalone" and row.close_s is not None and sc.expect["stage"] == "completed":
        # The target is close + 2 s. Measured here with the suite's trainers on 2 cores: up to
        # close + 3.3 s from the loop's last call to the exit (the end of the fluent run, then the
        # interpreter's teardown of TF, cut by exits.exit_with(teardown=...)); the old code held the exit for
        # the whole flush_timeout or, with a user's leftover thread, indefinitely. EXIT_AFTER_CLOSE_S leaves
        # the machine's load room and stays under that 20 s.
        assert row.exit_s <= row.close_s + EXIT_AFTER_CLOSE_S, (row.exit_s, row.close_s)


def _twin(sc):
    """The runtime row of a comparison row's scenario (looked up in the whole table: TR_FAULT_ONLY may
    leave it out of this run)."""
    return next((s for s in scenarios() if s.name == sc.name and s.tracker == "runtime"), None)


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("user code:") and n.endswith("[mlflow]")])
def test_user_code_comparison_row_ran(rows, name):
    """Plain MLflow ran the same loop under the same fault (its numbers are what they are): the loop
    logged to its run."""
    sc = _scenario(name)
    checks.check_comparison_row(rows[name], sc, _twin(sc))


def test_down_to_the_end_then_replay_twice(rows):
    row = _row(rows, "down from epoch 2 to the end [runtime]")
    first, second = row.extra["replay"], row.extra["replay again"]
    assert first["exit_code"] == 0 and first["on_server"] == row.expected and first["lost"] == 0
    assert first["run_status"] == "FINISHED"
    assert second["exit_code"] == 0 and "nothing to replay" in second["out"]
    assert second["on_server"] == row.expected and second["duplicates"] == 0


def test_sigkill_leaves_a_stale_status_and_a_replayable_spool(rows):
    row = _row(rows, "SIGKILL at epoch 5 [runtime]")
    assert row.extra["status_cmd"]["exit_code"] == command_exits.STALE and "STALE" in row.extra["status_cmd"]["out"]
    assert row.extra["replay"]["exit_code"] == 0 and row.extra["replay"]["run_status"] == "KILLED"
    assert row.extra["replay"]["lost"] <= 4


def test_twenty_trainers_share_one_new_experiment(rows):
    runs = _row(rows, "20 trainers start at once on one new experiment [runtime]").extra["runs"]
    assert runs == {"experiments": 1, "runs": 20, "finished": 20, "exit_codes": [0] * 20}


def test_nan_inf_invalid_names_and_10k_keys_all_land(rows):
    row = _row(rows, "NaN/inf, invalid names, 10k distinct keys [runtime]")
    assert row.extra["server_keys"] >= 10_000 + 5
    counts = row.status["logging"]
    assert counts["non_finite"] == 6 and counts["renamed"] == {"bad name@!": "bad name__"}


@pytest.mark.parametrize("name", [n for n in NAMES if not n.startswith("user code:") and n.endswith("[mlflow]")])
def test_mlflow_callback_row_ran(rows, name):
    """MLflow's own callback ran the same fit under the same fault as the runtime's row of that name (its
    numbers are what they are): the fault came on the fit's timeline, and the callback logged to its run."""
    sc = _scenario(name)
    checks.check_comparison_row(rows[name], sc, _twin(sc))


def test_no_secret_anywhere(rows, mlflow_server):
    """The 64-character MLFLOW_TRACKING_TOKEN of every open-proxy scenario appears in no log,
    status file, spool, or MLflow param or tag."""
    from mlflow import MlflowClient

    hits = []
    for row in rows.values():
        for path in row.files:
            if SECRET in Path(path).read_text(errors="replace"):
                hits.append(path)
        if row.run_id:
            data = MlflowClient(row.mlflow_url or mlflow_server.url).get_run(row.run_id).data
            if any(SECRET in str(v) for v in [*data.params.values(), *data.tags.values()]):
                hits.append(f"run {row.run_id}")
    assert hits == []
    assert sum(len(r.files) for r in rows.values()) > 50


def test_every_status_file_is_valid_against_the_strict_schema(rows):
    """Each status, replica status and info file any row left parses strictly and is valid against the
    contract's strict schema; each runtime row's own status file is among them, and together they saw every
    stage a run can end in here, a SIGKILLed run's stale `training`, and tracking ok, degraded and replayed."""
    checked, labels = checks.check_status_files(rows, {name: _scenario(name) for name in rows})
    MEASUREMENTS.append(f"fault suite: {status_files.summary(labels)}")
    local = [n for n in rows if checks.has_local_status(_scenario(n))]
    assert checked.get("mlflow_status.json", 0) >= len(local) and checked.get("mlflow_info.json", 0) > 0, checked
    wanted = checks.expected_labels([_scenario(n) for n in rows])
    if not ONLY:
        assert wanted >= checks.EVERY_ENDING, f"no row ends with {sorted(checks.EVERY_ENDING - wanted)}"
    assert set(labels) >= wanted, f"no status file said {sorted(wanted - set(labels))}: {dict(labels)}"


def test_every_scenario_ran(rows):
    """No scenario raised (each that did also fails its own row's tests, with what it raised)."""
    assert not rows.failed, {name: repr(exc) for name, exc in rows.failed.items()}


def test_reliability_doc_is_current(rows):
    if os.environ.get("TR_WRITE_RELIABILITY") == "1":
        return
    if ONLY:
        pytest.skip("TR_FAULT_ONLY runs part of the table")
    measured = {reliability.as_strings(row) for row in rows.values()}
    committed = reliability.committed_stable_rows()
    assert committed == measured, (
        "docs/reliability.md is stale: run `make reliability` (differences: "
        f"missing {sorted(measured - committed)}, extra {sorted(committed - measured)})")
