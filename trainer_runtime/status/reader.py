"""A run's status files read back into one typed view, for platforms and for `trainer-runtime status`.

``read(uri)`` takes a status dir (local or ``gs://bucket/prefix``) or a TFX Trainer's
``model_run`` dir (its status is beside it, in ``<model_run>-mlflow``) and returns a
``StatusView``: stage and outcome, error, the MLflow run, tracking (degraded, pending,
how to replay), heartbeat and staleness, progress, the model version, and every other
replica's ending (``mlflow_status.<type>-<index>.json``), each judged stale on its own.
``list_trainings(root)`` reads every status under a pipeline root, newest first.

Files of every ``schema_version`` so far (1 and 2) read alike; fields this reader does
not know are ignored, and a version it does not know is refused rather than guessed at:
the contract's compatibility rules (``contract``, docs/user-guide.md).

Staleness, the one rule: a run that has not finished is **stale** when its last heartbeat
is older than ``STALE_FACTOR`` x its ``heartbeat_interval`` (default 30 s). A replica that
writes no heartbeat is stale once the chief has ended that long ago and it has not.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any, Mapping

from trainer_runtime.core.errors import RuntimeFailure
from trainer_runtime.status.reporter import INFO_FILE, STATUS_FILE, TERMINAL
from trainer_runtime.status.storage import TextDir, open_dir

log = logging.getLogger(__name__)

#: the status files' schema_versions this reader reads (a file without one is an early version 1)
READS_SCHEMA_VERSIONS = (1, 2)
DEFAULT_HEARTBEAT_INTERVAL = 30.0
STALE_FACTOR = 2
#: ``outcome`` of a run that has not finished
RUNNING, STALE = "running", "stale"
_REPLICA_PREFIX = STATUS_FILE[: -len(".json")] + "."
_NOT_FOUND_HINT = ("pass the status dir: <model_run URI>-mlflow for a TFX Trainer, $AIP_MODEL_DIR or the "
                   "working dir for `trainer-runtime run`, or TRAINER_RUNTIME_STATUS_DIR if it was set")


class StatusNotFound(FileNotFoundError):
    """No readable status where ``read`` looked: no file, one that is not a status object, or one
    of a ``schema_version`` this reader does not know.

    ``looked_at``: each place tried, with what was found there.
    """

    def __init__(self, message: str, looked_at: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.looked_at = looked_at


@dataclass(frozen=True)
class ErrorView:
    """The error that ended a run or a replica, as its status file recorded it."""

    type: str | None
    message: str | None
    hint: str | None = None
    fault: str | None = None  # "user" | "platform"
    exit_code: int | None = None
    traceback: str | None = None


@dataclass(frozen=True)
class ModelVersion:
    """The Model Registry version a completed Trainer registered."""

    name: str | None
    version: str | None
    source: str | None


@dataclass(frozen=True)
class ReplicaView:
    """How a replica other than the chief ended, from its ``mlflow_status.<type>-<index>.json``."""

    name: str
    status_file: str
    stage: str | None
    finished: bool
    exit_code: int | None
    error: ErrorView | None
    heartbeat_at: dt.datetime | None
    stale: bool
    stale_reason: str | None
    unreadable: str | None = None  # why the file could not be read; the other fields are then empty


@dataclass(frozen=True)
class StatusView:
    """One run's status files, read at ``read_at``. ``to_json()`` gives its stable JSON form.

    ``outcome``: the stage when the run has finished (``completed``, ``failed``, ``killed``),
    else ``stale`` or ``running`` (a run without heartbeat fields counts as running: nothing
    tells it from a dead one). ``degraded``: tracking did not get everything to the server
    (``pending`` points; ``replay_command`` lands them).
    """

    target: str
    status_file: str
    status_dir: str
    schema_version: int | None
    stage: str | None
    outcome: str
    finished: bool
    exit_code: int | None
    attempt: int | None
    error: ErrorView | None
    run_id: str | None
    run_url: str | None
    experiment_name: str | None
    experiment_id: str | None
    tracking_uri: str | None
    tracking_state: str | None
    degraded: bool
    pending: int | None
    spool_uri: str | None
    replay_command: str | None
    heartbeat_at: dt.datetime | None
    heartbeat_interval: float
    heartbeat_age_seconds: float | None
    stale: bool
    stale_reason: str | None
    progress: Mapping[str, Any]
    logging: Mapping[str, Any] | None
    replicas: Mapping[str, ReplicaView]
    model_version: ModelVersion | None
    timestamps: Mapping[str, str]
    last_update: dt.datetime | None
    runtime_version: str | None
    read_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        """This view as JSON-able values: times as ISO-8601 UTC (``…Z``), nested views as objects."""
        return {"found": True, **_jsonable(dataclasses.asdict(self))}


def read(uri: str, *, now: dt.datetime | None = None) -> StatusView:
    """Read the status at ``uri``: a status dir (local or ``gs://bucket/prefix``), a file in one,
    or a TFX ``model_run`` dir.

    Args:
        now: when it is read (timezone-aware), for the heartbeat's age; default the clock's.
    Raises:
        StatusNotFound: nothing readable there (its message and ``looked_at`` say where it looked).
    """
    tried = []
    for place in candidates(uri):
        try:
            directory = open_dir(place)
            status = _load(directory)
        except StatusNotFound:
            raise  # a file is there, and it is not a status: say so rather than look further
        except FileNotFoundError:
            tried.append(f"{place}/{STATUS_FILE}: not found")
            continue
        except (OSError, RuntimeFailure) as exc:
            tried.append(f"{place}/{STATUS_FILE}: {getattr(exc, 'message', None) or exc}")
            continue
        return _view(uri, directory, status, _now(now))
    raise StatusNotFound("no status found; looked at:\n" + "\n".join(f"  {t}" for t in tried) + "\n"
                         + _NOT_FOUND_HINT, tuple(tried))


def list_trainings(root_uri: str, limit: int | None = 10, *, now: dt.datetime | None = None) -> list[StatusView]:
    """The runs whose ``mlflow_status.json`` is anywhere under ``root_uri`` (a pipeline root, local or
    gs://), newest first by ``last_update``; at most ``limit`` of them (None: all).

    Every status under the root is read once to order them; only the newest ``limit`` are then
    read in full (info and replicas). A status that cannot be read is logged and left out.
    """
    found = []
    for directory in open_dir(root_uri).dirs_with(STATUS_FILE):
        try:
            status = _load(directory)
        except (OSError, RuntimeFailure) as exc:
            log.warning("left out %s/%s: %s", directory.describe(), STATUS_FILE, exc)
            continue
        found.append((_last_update(status, _progress(status)), directory, status))
    oldest = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    found.sort(key=lambda item: item[0] or oldest, reverse=True)
    at = _now(now)
    return [_view(d.describe(), d, status, at) for _, d, status in found[:limit]]


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


def judge(finished: bool, heartbeat_at: dt.datetime | None, interval: float,
          now: dt.datetime) -> tuple[bool, str | None, float | None]:
    """``(stale, why, heartbeat age in seconds)``: stale when not finished and the heartbeat is older
    than ``STALE_FACTOR`` x ``interval``; never without a heartbeat (nothing to tell by)."""
    if heartbeat_at is None:
        return False, None, None
    age = (now - heartbeat_at).total_seconds()
    if finished or age <= STALE_FACTOR * interval:
        return False, None, age
    return True, f"the last heartbeat is {age_text(age)} old (expected every {interval:g} s)", age


def parse_time(value: Any) -> dt.datetime | None:
    """ISO-8601 as the runtime writes it (``2026-11-25T01:02:03.456Z``); naive times are UTC."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def age_text(seconds: float) -> str:
    """``41 s``, ``12 min``, ``3 h 02 min``, ``2 d 4 h``."""
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if hours < 2:
        return f"{minutes} min"
    if days < 2:
        return f"{hours} h {minutes % 60:02d} min"
    return f"{days} d {hours % 24} h"


def _load(directory: TextDir, name: str = STATUS_FILE) -> dict[str, Any]:
    """The status object in ``name``. Raises FileNotFoundError (none there) or StatusNotFound (not a status)."""
    where = f"{directory.describe()}/{name}"
    text = directory.read_text(name)
    try:
        status = json.loads(text)
    except ValueError as exc:
        raise StatusNotFound(f"{where} is not valid JSON ({exc})", (f"{where}: not valid JSON",)) from exc
    if not isinstance(status, dict):
        raise StatusNotFound(f"{where} does not hold a status object", (f"{where}: not an object",))
    version = status.get("schema_version", 1)
    if version not in READS_SCHEMA_VERSIONS or isinstance(version, bool):
        known = " and ".join(map(str, READS_SCHEMA_VERSIONS))
        raise StatusNotFound(f"{where} has schema_version {version!r}; this trainer-runtime reads {known}: "
                             "upgrade trainer-runtime to read it", (f"{where}: schema_version {version!r}",))
    return status


def _view(target: str, directory: TextDir, status: dict[str, Any], now: dt.datetime) -> StatusView:
    info = _info(directory)
    progress = _progress(status)
    finished = status.get("stage") in TERMINAL
    beat = parse_time(progress.get("heartbeat_at"))
    interval = _interval(status, progress)
    stale, reason, age = judge(finished, beat, interval, now)
    tracking = status.get("tracking") if isinstance(status.get("tracking"), dict) else {}
    ended_at = parse_time(_timestamps(status).get(status.get("stage"))) if finished else None

    def pick(key: str) -> Any:
        return status.get(key) or info.get(key)

    return StatusView(
        target=target, status_file=f"{directory.describe()}/{STATUS_FILE}", status_dir=directory.describe(),
        schema_version=status.get("schema_version"), stage=status.get("stage"),
        outcome=status["stage"] if finished else (STALE if stale else RUNNING), finished=finished,
        exit_code=status.get("exit_code"), attempt=status.get("attempt"), error=_error(status.get("error")),
        run_id=pick("run_id"), run_url=pick("run_url"), experiment_name=pick("experiment_name"),
        experiment_id=pick("experiment_id"), tracking_uri=pick("tracking_uri"),
        tracking_state=tracking.get("state") or ("unknown" if tracking else None),
        degraded=tracking.get("state") == "degraded",
        pending=tracking.get("pending"), spool_uri=tracking.get("spool_uri"),
        replay_command=tracking.get("replay_command"),
        heartbeat_at=beat, heartbeat_interval=interval, heartbeat_age_seconds=age, stale=stale, stale_reason=reason,
        progress=progress, logging=status.get("logging") if isinstance(status.get("logging"), dict) else None,
        replicas=_replicas(directory, ended_at, now), model_version=_model_version(status, info),
        timestamps=_timestamps(status), last_update=_last_update(status, progress),
        runtime_version=status.get("runtime_version"), read_at=now)


def _replicas(directory: TextDir, chief_ended: dt.datetime | None, now: dt.datetime) -> dict[str, ReplicaView]:
    """Every ``mlflow_status.<type>-<index>.json`` beside the chief's, by replica name."""
    try:
        names = [n for n in directory.list_names(_REPLICA_PREFIX) if n != STATUS_FILE and n.endswith(".json")]
    except (OSError, RuntimeFailure) as exc:
        log.warning("cannot list the replicas' status files in %s: %s", directory.describe(), exc)
        return {}
    replicas = {}
    for file_name in names:
        name = file_name[len(_REPLICA_PREFIX):-len(".json")]
        where = f"{directory.describe()}/{file_name}"
        try:
            status = _load(directory, file_name)
        except (OSError, RuntimeFailure) as exc:
            replicas[name] = ReplicaView(name, where, stage=None, finished=False, exit_code=None, error=None,
                                         heartbeat_at=None, stale=False, stale_reason=None, unreadable=str(exc))
            continue
        progress = _progress(status)
        finished = status.get("stage") in TERMINAL
        beat = parse_time(progress.get("heartbeat_at"))
        interval = _interval(status, progress)
        stale, reason, _ = judge(finished, beat, interval, now)
        if beat is None and not finished and chief_ended is not None:
            since = (now - chief_ended).total_seconds()
            if since > STALE_FACTOR * interval:
                stale, reason = True, (f"still {status.get('stage')!r} {age_text(since)} after the chief ended; "
                                       "it wrote no end of its own")
        replicas[name] = ReplicaView(name, where, stage=status.get("stage"), finished=finished,
                                     exit_code=status.get("exit_code"), error=_error(status.get("error")),
                                     heartbeat_at=beat, stale=stale, stale_reason=reason)
    return replicas


def _info(directory: TextDir) -> dict[str, Any]:
    try:
        info = json.loads(directory.read_text(INFO_FILE))
    except (OSError, ValueError, RuntimeFailure):
        return {}
    return info if isinstance(info, dict) else {}


def _error(error: Any) -> ErrorView | None:
    if not isinstance(error, dict):
        return None
    return ErrorView(error.get("type"), error.get("message"), error.get("hint"), error.get("fault"),
                     error.get("exit_code"), error.get("traceback"))


def _model_version(status: dict[str, Any], info: dict[str, Any]) -> ModelVersion | None:
    """mlflow_info.json's ``model_version``, else the status's ``model_registry`` once registered."""
    registry = status.get("model_registry") if isinstance(status.get("model_registry"), dict) else {}
    for found in (info.get("model_version"), registry if registry.get("state") == "registered" else None):
        if isinstance(found, dict) and found.get("version") is not None:
            return ModelVersion(found.get("name"), str(found["version"]), found.get("source"))
    return None


def _progress(status: dict[str, Any]) -> dict[str, Any]:
    return status["progress"] if isinstance(status.get("progress"), dict) else {}


def _timestamps(status: dict[str, Any]) -> dict[str, str]:
    return status["timestamps"] if isinstance(status.get("timestamps"), dict) else {}


def _last_update(status: dict[str, Any], progress: dict[str, Any]) -> dt.datetime | None:
    times = [parse_time(v) for v in [*_timestamps(status).values(), progress.get("heartbeat_at")]]
    return max((t for t in times if t is not None), default=None)


def _interval(status: dict[str, Any], progress: dict[str, Any]) -> float:
    for value in (status.get("heartbeat_interval"), progress.get("heartbeat_interval")):
        try:
            if value is not None and float(value) > 0:
                return float(value)
        except (TypeError, ValueError):
            pass
    return DEFAULT_HEARTBEAT_INTERVAL


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else dt.datetime.now(dt.timezone.utc)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
