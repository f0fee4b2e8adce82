"""docs/reliability.md, generated from the fault suite's rows.

The table's measured columns (points, stall, close time) change from run to run;
the runtime's outcome columns (lost, final stage, exit code, tracking, run
status) must not. ``stable_columns`` is what the staleness test compares.
"""
from __future__ import annotations

import datetime as dt
import platform
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
BEGIN, END = "<!-- BEGIN GENERATED RELIABILITY TABLE -->", "<!-- END GENERATED RELIABILITY TABLE -->"

HEADER = """# Reliability

Every row is a real trainer process (a paced tf-keras fit, 1 s per epoch) run
under a real fault: a fault proxy of the project's own (`tests/harness/fault_proxy.py`)
in front of a live MLflow 3.17.2 server drops connections, answers 401/403/503 or
MLflow's Host-header 403; SIGTERM and SIGKILL are real signals; ID tokens come from
a metadata server google-auth really calls; GCS is the storage emulator behind a
503-injecting proxy. The suite is `tests/faults/` (part of `make test`), and it
writes this file with `make reliability`; a test fails when the stable columns here
differ from what the suite measures.

Columns: **expected** metric points the epochs produced; **server** how many of
them are on the server after the run; **spool** how many are in the spool the run
uploaded beside its status (what `trainer-runtime replay` lands); **lost** neither;
**stall** the longest extra pause of the training thread between epochs; **close**
seconds the runtime's close took (from the end of training, or from the signal, to
the final status; for MLflow's callback, to the process exit); **exit s** seconds
from `fit` returning (or from the signal) to the process exit; **stage /
exit / tracking** from `mlflow_status.json`; **run** the MLflow run's status on the
server. The close budget is `flush_timeout` ({flush} s in the suite; 60 s by
default) on a normal end and `sigterm_grace` (25 s) after SIGTERM. Rows marked
*MLflow MlflowCallback* run the same fit with MLflow's own callback
(`mlflow.tensorflow.MlflowCallback`, `mlflow.start_run`/`end_run`) as the comparison.
"""


USER_HEADER = """### User code calling MLflow

Rows named *user code:* run a custom loop (no Keras `fit`, `tests/faults/user_loop.py`) that calls
MLflow's own API: `log_params` once, `log_metric` every step (0.1 s apart), `log_artifact` (the file
deleted right after) and `log_dict` at the end; *autolog* adds `mlflow.autolog()` and a tf-keras fit
every 10 steps with a callback logging its epochs through `mlflow.log_metrics`; *synchronous=False*
logs every step with `synchronous=False`; *20 more points a step* logs 20 more keys every step. The
same code runs under the runtime (standalone, and as the run_fn of a Trainer with TrackedExecutor on
LocalDagRunner) and under plain MLflow (`mlflow.start_run`, no runtime). In the table above, the points
are the loop's; **stall** is the longest extra pause between steps. Below, **longest call** and
**summed calls** are the loop's MLflow calls on its own thread, and **summed stall** what they took
beyond 1 ms each (MLflow's own per-call work: ~30 µs unloaded, a few hundred µs with the suite's
trainers on 2 cores), i.e. the time they waited; the artifacts are the two files,
counted on the server, in the spool shipped beside the status, and after `trainer-runtime replay`
(a loop signalled before its end never logged them);
**peak RSS growth** is the process's RSS at its highest, sampled every 50 steps, minus at the start.

"""


def _cell(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


#: a SIGKILL in an outage loses what came after the last ship: at most this many of the loop's points
SHIPPED_LOSS = "≤ 65"
#: a SIGKILL of a healthy run loses at most the epochs in flight (2 epochs x 2 metrics; checks.py asserts it)
IN_FLIGHT_LOSS = "≤ 4"


def lost_cell(row):
    """The lost column: exact, but for a SIGKILL, whose loss depends on where the signal landed (in the
    ship interval of a user loop in an outage; among the epochs in flight of a healthy fit, 0 on a quiet
    machine, a few on a loaded one): the suite asserts the bound; the notes give the count."""
    if row.scenario.startswith("user code:") and "SIGKILL" in row.scenario and row.lost <= 65:
        return SHIPPED_LOSS
    if row.scenario.startswith("SIGKILL") and row.lost <= 4:
        return IN_FLIGHT_LOSS
    return row.lost


def stable_columns(row) -> tuple:
    """What must not change between runs: the runtime's outcome columns. Counts of points depend on
    when a signal lands and are checked by the suite's own tests; the comparison rows are MLflow's."""
    ours = row.tracker == "trainer-runtime"
    return (row.scenario, row.tracker, row.wiring, lost_cell(row) if ours else "", row.stage if ours else "",
            row.exit_code if ours else "", row.tracking if ours else "", row.run_status if ours else "")


def table(rows: list) -> str:
    lines = ["| scenario | tracker | wiring | expected | server | spool | lost | stall s | close s | exit s | "
             "stage | exit | tracking | run |", "|" + "---|" * 14]
    for r in rows:
        lines.append("| " + " | ".join(_cell(v) for v in (
            r.scenario, r.tracker, r.wiring, r.expected, r.on_server, r.in_spool, lost_cell(r), r.stall_s,
            r.close_s, r.exit_s, r.stage, r.exit_code, r.tracking, r.run_status)) + " |")
        for label in ("replay", "replay again"):
            step = r.extra.get(label) if label != "replay" or "status_cmd" not in r.extra else None
            if step:
                lines.append("| " + " | ".join(_cell(v) for v in (
                    f"… then `trainer-runtime {label}`", r.tracker, r.wiring, r.expected, step["on_server"],
                    step["in_spool"], step["lost"], None, None, None, f"exit {step['exit_code']}", None, None,
                    step["run_status"])) + " |")
    return "\n".join(lines)


def user_table(rows: list) -> str:
    """The user-code rows' own columns (not part of the staleness check: all measured)."""
    lines = ["| scenario | tracker | wiring | calls | longest call s | summed calls s | summed stall s | "
             "artifacts expected | server | spool | lost | after replay | peak RSS growth MB |", "|" + "---|" * 13]
    for r in rows:
        user = r.extra.get("user")
        if not user:
            continue
        if not user.get("finished"):
            lines.append("| " + " | ".join((r.scenario, r.tracker, r.wiring, "did not finish", *["—"] * 9)) + " |")
            continue
        replayed = r.extra.get("replay", {}).get("artifacts_on_server")
        lines.append("| " + " | ".join(_cell(v) for v in (
            r.scenario, r.tracker, r.wiring, user["calls"], f"{user['longest_s']:.4f}", f"{user['total_s']:.3f}",
            f"{user['stall_s']:.3f}",
            user["artifacts_expected"], user["artifacts_on_server"], user["artifacts_in_spool"],
            user["artifacts_lost"], replayed, user["rss_growth_mb"])) + " |")
    return "\n".join(lines)


def notes(rows: list) -> str:
    out = []
    for r in rows:
        if "status_cmd" in r.extra:
            replayed = r.extra.get("replay", {})
            out.append(f"- **{r.scenario}**: `trainer-runtime status` exits {r.extra['status_cmd']['exit_code']} "
                       f"(stale heartbeat); replaying the local spool puts {replayed.get('on_server')} of "
                       f"{r.expected} points on the server and marks the run {replayed.get('run_status')}.")
        if "runs" in r.extra:
            runs = r.extra["runs"]
            out.append(f"- **{r.scenario}**: {runs['experiments']} experiment, {runs['runs']} runs, "
                       f"{runs['finished']} FINISHED; exit codes {sorted(set(runs['exit_codes']))}.")
        if "server_keys" in r.extra and r.scenario.startswith("NaN"):
            out.append(f"- **{r.scenario}**: {r.extra['server_keys']} distinct metric keys on the run "
                       "(10,000 + the fit's own + NaN, inf and the renamed name).")
        if lost_cell(r) != r.lost:
            why = "logged after the last ship" if r.scenario.startswith("user code:") else "in flight at the signal"
            out.append(f"- **{r.scenario}**: {r.lost} of {r.expected} points lost ({why}).")
        for note in r.notes:
            out.append(f"- {r.scenario} ({r.tracker}): {note}")
    return "\n".join(out)


def render(rows: list, flush: float) -> str:
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (HEADER.replace("{flush}", f"{flush:g}") + f"\n{BEGIN}\n"
            f"Measured {when} on {platform.node() or 'this machine'} ({platform.machine()}).\n\n"
            + table(rows) + "\n\n" + USER_HEADER + user_table(rows) + "\n\n" + notes(rows) + f"\n{END}\n")


def committed_stable_rows() -> set[tuple]:
    """The stable columns of the committed table (as strings)."""
    if not DOC.exists():
        return set()
    rows = set()
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 14 and cells[0] not in ("scenario", "---") and not cells[0].startswith("…"):
            ours = cells[1] == "trainer-runtime"
            rows.add((cells[0], cells[1], cells[2], *((cells[6], cells[10], cells[11], cells[12], cells[13])
                                                      if ours else ("", "", "", "", ""))))
    return rows


def as_strings(row) -> tuple:
    return tuple(_cell(v) for v in stable_columns(row))
