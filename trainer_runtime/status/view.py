"""`trainer-runtime status <dir | gs://…>`: a run's status files, told for a person (or as JSON).

Built on ``reader.read``: says what happened: stage, run, exit code, error and fix, tracking
(degraded: what is pending and how to replay it), logging counts, progress, and how each other
replica of a distributed training ended. A run that is not finished and whose heartbeat is
older than twice its interval is called STALE (``reader.judge``): nothing has written its
status for too long. ``--json`` prints ``StatusView.to_json()`` instead, with the same exit code.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any, Callable, TextIO

from trainer_runtime.core import command_exits
from trainer_runtime.core.redact import redact, redact_tree
from trainer_runtime.status.reader import (STALE, ErrorView, StatusNotFound, StatusView, age_text, iso, parse_time,
                                           read)

#: exit codes of `trainer-runtime status` (numbers no run exits with: ``core.command_exits``)
EXIT_COMPLETED = command_exits.COMPLETED
EXIT_FAILED = command_exits.FAILED
EXIT_STALE = command_exits.STALE
EXIT_NO_STATUS = command_exits.NOT_FOUND
EXIT_RUNNING = command_exits.RUNNING

TRACEBACK_LINES = 8

STALE_MEANING = ["  The trainer was probably killed (SIGKILL, OOM or the node was lost) without a chance to",
                 "  write its end; the MLflow run may still be RUNNING. Check the job's logs.",
                 "  `trainer-runtime replay {target}` closes the run if a spool was uploaded."]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def show_status(target: str, out: TextIO, clock: Callable[[], dt.datetime] = utc_now, *,
                as_json: bool = False) -> int:
    """Print the status found at ``target`` (as JSON with ``as_json``) and return the command's exit code."""
    try:
        view = read(target, now=clock())
    except StatusNotFound as exc:
        if as_json:
            out.write(json.dumps({"found": False, "target": target, "message": str(exc),
                                  "looked_at": list(exc.looked_at)}, indent=2) + "\n")
        else:
            out.write(f"{exc}\n")
        return EXIT_NO_STATUS
    if as_json:
        out.write(json.dumps(redact_tree(view.to_json()), indent=2) + "\n")
    else:
        out.write("\n".join(redact(line) for line in describe(view)) + "\n")
    return exit_code(view)


def exit_code(view: StatusView) -> int:
    """The command's exit code for ``view``: completed 0, failed or killed 1, stale 6, else running 5."""
    if view.outcome == "completed":
        return EXIT_COMPLETED
    if view.finished:
        return EXIT_FAILED
    return EXIT_STALE if view.outcome == STALE else EXIT_RUNNING


def describe(view: StatusView) -> list[str]:
    """The lines that tell ``view`` to a person."""
    now = view.read_at
    stage = view.stage or "unknown"
    lines = [f"status: {view.status_file}"]
    stage_line = f"stage: {stage}"
    if view.exit_code is not None:
        stage_line += f" (exit code {view.exit_code})"
    if view.attempt is not None:
        stage_line += f", attempt {view.attempt}"
    entered = parse_time(view.timestamps.get(stage))
    if entered is not None:
        stage_line += f", since {iso(entered)} ({_ago(now - entered)})"
    lines.append(stage_line)
    lines += _run_lines(view)
    lines += _error_lines(view.error)
    lines += _tracking_lines(view)
    if view.logging is not None:
        lines.append(f"logging: {_counts(view.logging)}")
    if view.progress:
        lines.append(f"progress: {_progress(view)}")
    lines += _replica_lines(view)

    if view.finished:
        return lines
    if view.heartbeat_at is None:
        lines.append(f"cannot tell a live run from a dead one: this status has no heartbeat (stage {stage!r}; "
                     "a runtime that writes heartbeats does so during training). Check the job's state "
                     "and logs.")
        return lines
    if view.stale:
        lines.append(f"STALE: {view.stale_reason}.")
        return lines + [line.format(target=view.status_dir) for line in STALE_MEANING]
    lines.append(f"live: the last heartbeat is {age_text(view.heartbeat_age_seconds or 0)} old "
                 f"(expected every {view.heartbeat_interval:g} s)")
    return lines


def _run_lines(view: StatusView) -> list[str]:
    if not view.run_id:
        return ["run: none yet (the MLflow run was not created)"]
    lines = [f"run: {view.run_url or view.run_id}"]
    details = [f"run_id {view.run_id}"]
    if view.experiment_name:
        details.append(f"experiment {view.experiment_name!r}")
    if view.tracking_uri:
        details.append(f"server {view.tracking_uri}")
    lines.append("  " + ", ".join(details))
    if view.model_version is not None:
        model = view.model_version
        lines.append(f"  model {model.name!r} version {model.version}" + (f" ({model.source})" if model.source else ""))
    return lines


def _error_lines(error: ErrorView | None) -> list[str]:
    if error is None:
        return []
    fault = f" ({error.fault} fault)" if error.fault else ""
    lines = [f"error: {error.type or 'error'}{fault}: {error.message or ''}".rstrip()]
    if error.hint:
        lines.append(f"  fix: {error.hint}")
    tail = [line for line in str(error.traceback or "").splitlines() if line.strip()]
    if tail:
        lines.append("  traceback (last lines):")
        lines += [f"    {line}" for line in tail[-TRACEBACK_LINES:]]
    return lines


def _tracking_lines(view: StatusView) -> list[str]:
    if view.tracking_state is None:
        return []
    if view.tracking_state == "ok":
        return ["tracking: ok (everything accepted is on the MLflow server)"]
    pending = view.pending
    lines = [f"tracking: {view.tracking_state}: " + (f"{pending} point(s) are not on the MLflow server"
                                                     if pending is not None
                                                     else "the MLflow server did not get everything")]
    if view.spool_uri:
        lines.append(f"  kept in: {view.spool_uri}")
    else:
        lines.append("  no spool was uploaded: what is pending is lost unless the trainer's disk survives")
    if view.replay_command:
        lines.append(f"  to land them and close the run: {view.replay_command}")
    return lines


def _replica_lines(view: StatusView) -> list[str]:
    """``replicas:`` then one line each: ``worker-1: failed (exit code 4): UserCodeError: …``."""
    if not view.replicas:
        return []
    lines = ["replicas:"]
    for name, replica in sorted(view.replicas.items()):
        if replica.unreadable:
            lines.append(f"  {name}: unreadable: {replica.unreadable}")
            continue
        line = f"  {name}: {replica.stage or 'unknown'}"
        if replica.exit_code is not None:
            line += f" (exit code {replica.exit_code})"
        if replica.error is not None:
            line += f": {replica.error.type or 'error'}: {replica.error.message or ''}".rstrip()
        if replica.stale:
            line += f"; STALE: {replica.stale_reason}"
        lines.append(line)
    return lines


_COUNT_ORDER = ("accepted", "sent", "pending", "rejected", "renamed")


def _counts(counts: dict[str, Any]) -> str:
    """``accepted 52, sent 44, pending 8, rejected 1 (nan: 1), renamed 0``, then any other count."""
    keys = [k for k in _COUNT_ORDER if k in counts] + [k for k in counts if k not in _COUNT_ORDER]
    parts = []
    for key in keys:
        value = counts[key]
        if isinstance(value, dict):
            total = sum(v for v in value.values() if isinstance(v, (int, float)))
            detail = ", ".join(f"{reason}: {n}" for reason, n in value.items())
            parts.append(f"{key} {total:g}" + (f" ({detail})" if detail else ""))
        elif isinstance(value, list):
            parts.append(f"{key} {len(value)}")
        elif value is not None:
            parts.append(f"{key} {value}")
    return ", ".join(parts) or "none"


def _progress(view: StatusView) -> str:
    progress = view.progress
    parts = [f"{k} {progress[k]}" for k in ("epoch", "step") if progress.get(k) is not None]
    pending = progress.get("points_pending", progress.get("pending"))
    if pending is not None:
        parts.append(f"{pending} point(s) pending")
    if view.heartbeat_at is not None:
        parts.append(f"heartbeat at {iso(view.heartbeat_at)} ({_ago(view.read_at - view.heartbeat_at)})")
    elif progress.get("heartbeat_at"):
        parts.append(f"heartbeat at {progress['heartbeat_at']!r} (not a time this command can read)")
    return ", ".join(parts) or "none"


def _ago(delta: dt.timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds < 0:
        return f"{age_text(-seconds)} in the future: this machine's clock is behind the trainer's"
    return f"{age_text(seconds)} ago"
