"""`trainer-runtime status <dir | gs://…>`: a run's status files, told for a person.

Reads mlflow_status.json (and mlflow_info.json) from a local dir or a gs://
prefix and says what happened: stage, run, exit code, error and fix, tracking
(degraded: what is pending and how to replay it), logging counts and progress.
A run that is not finished and whose heartbeat is older than twice its interval
is called STALE: nothing has written its status for too long.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any, Callable, TextIO

from trainer_runtime.core import command_exits
from trainer_runtime.core.redact import redact
from trainer_runtime.status.reporter import INFO_FILE, STATUS_FILE, TERMINAL

#: exit codes of `trainer-runtime status` (numbers no run exits with: ``core.command_exits``)
EXIT_COMPLETED = command_exits.COMPLETED
EXIT_FAILED = command_exits.FAILED
EXIT_STALE = command_exits.STALE
EXIT_NO_STATUS = command_exits.NOT_FOUND
EXIT_RUNNING = command_exits.RUNNING

DEFAULT_HEARTBEAT_INTERVAL = 30.0
STALE_FACTOR = 2
TRACEBACK_LINES = 8

STALE_MEANING = ["  The trainer was probably killed (SIGKILL, OOM or the node was lost) without a chance to",
                 "  write its end; the MLflow run may still be RUNNING. Check the job's logs.",
                 "  `trainer-runtime replay {target}` closes the run if a spool was uploaded."]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def show_status(target: str, out: TextIO, clock: Callable[[], dt.datetime] = utc_now) -> int:
    """Print the status found at ``target`` and return the command's exit code."""
    found = load(target)
    if isinstance(found, str):
        out.write(found + "\n")
        return EXIT_NO_STATUS
    where, status, info = found
    lines, code = describe(status, info, clock(), where)
    out.write("\n".join(redact(line) for line in lines) + "\n")
    return code


def candidates(target: str) -> list[str]:
    """Where a status may be: the dir itself; for a Trainer's model_run dir, ``<model_run>-mlflow``."""
    target = target.rstrip("/") or target
    if target.endswith(".json"):
        target = target.rsplit("/", 1)[0] if "/" in target else "."
    places = [target]
    is_bucket = target.startswith("gs://") and "/" not in target[len("gs://"):]
    if not target.endswith("-mlflow") and target != "." and not is_bucket:
        places.append(f"{target}-mlflow")
    return places


def load(target: str) -> tuple[str, dict[str, Any], dict[str, Any] | None] | str:
    """``(where, status, info)``, or a message saying where it looked and what it found."""
    from trainer_runtime.core.errors import RuntimeFailure
    from trainer_runtime.status.storage import open_dir

    tried = []
    for place in candidates(target):
        try:
            directory = open_dir(place)
            text = directory.read_text(STATUS_FILE)
        except FileNotFoundError:
            tried.append(f"  {place}/{STATUS_FILE}: not found")
            continue
        except (OSError, RuntimeFailure) as exc:
            tried.append(f"  {place}/{STATUS_FILE}: {getattr(exc, 'message', None) or exc}")
            continue
        where = f"{directory.describe()}/{STATUS_FILE}"
        try:
            status = json.loads(text)
        except ValueError as exc:
            return f"{where} is not valid JSON ({exc})"
        if not isinstance(status, dict):
            return f"{where} does not hold a status object"
        try:
            info = json.loads(directory.read_text(INFO_FILE))
        except (OSError, ValueError, RuntimeFailure):
            info = None
        return where, status, info if isinstance(info, dict) else None
    return "no status found; looked at:\n" + "\n".join(tried) + (
        "\npass the status dir: <model_run URI>-mlflow for a TFX Trainer, $AIP_MODEL_DIR or the "
        "working dir for `trainer-runtime run`, or TRAINER_RUNTIME_STATUS_DIR if it was set")


def describe(status: dict[str, Any], info: dict[str, Any] | None, now: dt.datetime,
             where: str = "") -> tuple[list[str], int]:
    """The lines to print and the exit code, for a status read at ``now`` (timezone-aware)."""
    info = info or {}
    stage = status.get("stage") or "unknown"
    lines = [f"status: {where}"] if where else []
    stage_line = f"stage: {stage}"
    if status.get("exit_code") is not None:
        stage_line += f" (exit code {status['exit_code']})"
    if status.get("attempt") is not None:
        stage_line += f", attempt {status['attempt']}"
    entered = _parse_time((status.get("timestamps") or {}).get(stage))
    if entered is not None:
        stage_line += f", since {_iso(entered)} ({_ago(now - entered)})"
    lines.append(stage_line)
    lines += _run_lines(status, info)
    lines += _error_lines(status.get("error"))
    lines += _tracking_lines(status.get("tracking"))
    if isinstance(status.get("logging"), dict):
        lines.append(f"logging: {_counts(status['logging'])}")

    progress = status.get("progress") if isinstance(status.get("progress"), dict) else {}
    beat = _parse_time(progress.get("heartbeat_at"))
    if progress:
        lines.append(f"progress: {_progress(progress, beat, now)}")

    if stage == "completed":
        return lines, EXIT_COMPLETED
    if stage in TERMINAL:
        return lines, EXIT_FAILED
    if beat is None:
        lines.append(f"cannot tell a live run from a dead one: this status has no heartbeat (stage {stage!r}; "
                     "a runtime that writes heartbeats does so during training). Check the job's state "
                     "and logs.")
        return lines, EXIT_RUNNING
    interval = _interval(status, progress)
    age = now - beat
    if age.total_seconds() > STALE_FACTOR * interval:
        lines.append(f"STALE: the last heartbeat is {_age(age)} old (expected every {interval:g} s).")
        lines += [line.format(target=where.rsplit("/", 1)[0] if where else "<dir>") for line in STALE_MEANING]
        return lines, EXIT_STALE
    lines.append(f"live: the last heartbeat is {_age(age)} old (expected every {interval:g} s)")
    return lines, EXIT_RUNNING


def _run_lines(status: dict[str, Any], info: dict[str, Any]) -> list[str]:
    def pick(key: str) -> Any:
        return status.get(key) or info.get(key)

    if not pick("run_id"):
        return ["run: none yet (the MLflow run was not created)"]
    lines = [f"run: {pick('run_url') or pick('run_id')}"]
    details = [f"run_id {pick('run_id')}"]
    if pick("experiment_name"):
        details.append(f"experiment {pick('experiment_name')!r}")
    if pick("tracking_uri"):
        details.append(f"server {pick('tracking_uri')}")
    lines.append("  " + ", ".join(details))
    return lines


def _error_lines(error: Any) -> list[str]:
    if not isinstance(error, dict):
        return []
    fault = f" ({error['fault']} fault)" if error.get("fault") else ""
    lines = [f"error: {error.get('type') or 'error'}{fault}: {error.get('message') or ''}".rstrip()]
    if error.get("hint"):
        lines.append(f"  fix: {error['hint']}")
    tail = [line for line in str(error.get("traceback") or "").splitlines() if line.strip()]
    if tail:
        lines.append("  traceback (last lines):")
        lines += [f"    {line}" for line in tail[-TRACEBACK_LINES:]]
    return lines


def _tracking_lines(tracking: Any) -> list[str]:
    if not isinstance(tracking, dict):
        return []
    state = tracking.get("state") or "unknown"
    if state == "ok":
        return ["tracking: ok (everything accepted is on the MLflow server)"]
    pending = tracking.get("pending")
    lines = [f"tracking: {state}: " + (f"{pending} point(s) are not on the MLflow server"
                                         if pending is not None else "the MLflow server did not get everything")]
    if tracking.get("spool_uri"):
        lines.append(f"  kept in: {tracking['spool_uri']}")
    else:
        lines.append("  no spool was uploaded: what is pending is lost unless the trainer's disk survives")
    if tracking.get("replay_command"):
        lines.append(f"  to land them and close the run: {tracking['replay_command']}")
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


def _progress(progress: dict[str, Any], beat: dt.datetime | None, now: dt.datetime) -> str:
    parts = [f"{k} {progress[k]}" for k in ("epoch", "step") if progress.get(k) is not None]
    pending = progress.get("points_pending", progress.get("pending"))
    if pending is not None:
        parts.append(f"{pending} point(s) pending")
    if beat is not None:
        parts.append(f"heartbeat at {_iso(beat)} ({_ago(now - beat)})")
    elif progress.get("heartbeat_at"):
        parts.append(f"heartbeat at {progress['heartbeat_at']!r} (not a time this command can read)")
    return ", ".join(parts) or "none"


def _interval(status: dict[str, Any], progress: dict[str, Any]) -> float:
    for value in (status.get("heartbeat_interval"), progress.get("heartbeat_interval")):
        try:
            if value is not None and float(value) > 0:
                return float(value)
        except (TypeError, ValueError):
            pass
    return DEFAULT_HEARTBEAT_INTERVAL


def _parse_time(value: Any) -> dt.datetime | None:
    """ISO-8601 as the runtime writes it (``2026-11-25T01:02:03.456Z``); naive times are UTC."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ago(delta: dt.timedelta) -> str:
    if delta.total_seconds() < 0:
        return f"{_age(-delta)} in the future: this machine's clock is behind the trainer's"
    return f"{_age(delta)} ago"


def _age(delta: dt.timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if hours < 2:
        return f"{minutes} min"
    if days < 2:
        return f"{hours} h {minutes % 60:02d} min"
    return f"{days} d {hours % 24} h"
