"""The status files' contract: every field the runtime writes, as JSON Schemas (draft 2020-12).

One source for three documents: ``mlflow_status.json``, ``mlflow_info.json`` and a
replica's ``mlflow_status.<type>-<index>.json``. ``make docs`` publishes ``schema(name)``
under docs/schemas/ and renders the README's field tables from the same specs; the
tests validate every file they see written against ``schema(name, strict=True)``,
which forbids any field not declared here, so nothing written goes undocumented.

Compatibility (schema_version 2):

- ``schema_version`` is the contract's major version: it changes only for a breaking
  change, and a reader that meets one it does not know should say so rather than guess.
- A minor change keeps ``schema_version`` and may only add: an optional field (at the top
  level or inside an object), a key of an open map (an object whose schema types only its
  values and says "open map"), or a value of a set that a schema gives as a plain string
  and calls open (``error.type``).
- Readers must ignore the fields they do not know, at every level: the published schemas
  allow them.
- Every ``enum`` is closed: ``stage``, ``tracking.state``, ``error.fault`` and every other
  ``state``. A new value is a breaking change.
- Removing, renaming or retyping a field (allowing null or no longer allowing it
  included), making an optional field required, or adding a required field bumps
  ``schema_version``.
- ``stale`` is not a stage: it is a ``training`` file whose ``progress.heartbeat_at`` is
  older than twice its ``heartbeat_interval``.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from trainer_runtime.core import envvars

SCHEMA_VERSION = 2
DRAFT = "https://json-schema.org/draft/2020-12/schema"
ID_BASE = "https://github.com/trainer-runtime/schemas"
STAGES = ("initializing", "initialized", "training", "completed", "failed", "killed")
REPLICA_STAGES = ("training", "completed", "failed", "killed")
TERMINAL = ("completed", "failed", "killed")
#: the terminal stages whose file carries an error record (``completed``: ``error`` is null)
ERRORED = ("failed", "killed")


@dataclass(frozen=True)
class Field:
    """One top-level field: its JSON-Schema fragment and the one line that says what it means."""

    name: str
    schema: dict[str, Any]
    meaning: str
    required: bool = False


@dataclass(frozen=True)
class Document:
    name: str
    file: str
    summary: str
    fields: tuple[Field, ...]
    #: stages the file can say; None: a document without stages (mlflow_info.json)
    stages: tuple[str, ...] | None = None


def _obj(*required: str, **properties: dict[str, Any]) -> dict[str, Any]:
    """An object of known fields (unknown ones allowed when published, refused when strict)."""
    fragment: dict[str, Any] = {"type": "object", "properties": properties}
    return {**fragment, "required": list(required)} if required else fragment


def _map(values: dict[str, Any], keys: str) -> dict[str, Any]:
    """An open map: any key (``keys`` says which), every value of one type."""
    return {"type": "object", "description": f"open map: {keys}", "additionalProperties": values}


STR = {"type": "string"}
STR_OR_NULL = {"type": ["string", "null"]}
COUNT = {"type": "integer", "minimum": 0}
SECONDS = {"type": "number", "minimum": 0}
TIME = {"type": "string", "format": "date-time"}
#: a float as written: NaN and infinities are strings, as strict JSON readers need
FLOAT = {"anyOf": [{"type": "number"}, {"enum": ["NaN", "Infinity", "-Infinity"]}]}
ANY = {"description": "any JSON value"}


def _stage_fields(stages: tuple[str, ...]) -> tuple[Field, Field]:
    return (Field("stage", {"enum": list(stages)}, "current stage", required=True),
            Field("timestamps", {"type": "object", "propertyNames": {"enum": list(stages)},
                                 "additionalProperties": TIME},
                  "`{stage: ISO-8601 UTC}` for every stage reached, in order", required=True))


ERROR = _obj("type", "message", "hint", "fault", "exit_code", "traceback",
             type={**STR, "description": "open: the error class's name"}, message=STR, hint=STR,
             fault={"enum": ["user", "platform"]}, exit_code={"type": "integer"}, traceback=STR)
TRACKING = _obj(
    "state", state={"enum": ["ok", "closing", "degraded", "replayed"]}, spool_dir=STR,
    shipped=_obj("spool_uri", "acked", "last_seq", "pending_records", "at", spool_uri=STR,
                 acked=COUNT, last_seq=COUNT, pending_records=COUNT, at=TIME),
    replay_command=STR, pending=COUNT, run_closed={"type": "boolean"}, spool_uri=STR, error=STR,
    close_seconds=SECONDS)
LOGGING = _obj(
    "accepted", "sent", "pending", "rejected", accepted=COUNT, sent=COUNT, pending=COUNT,
    rejected=_map(COUNT, "reason -> points (not_a_number, secret_key, duplicate_param, duplicate_metric, "
                  "server_rejected, queue_full, artifact_too_large, artifact_refused, artifact_missing)"),
    rejected_names=_map(STR, "name -> why (the first few)"), renamed=_map(STR, "name given -> name logged"),
    truncated=_map(COUNT, "name -> length given"), non_finite=COUNT, send_failures=COUNT,
    outage_seconds=SECONDS, artifacts=_obj("accepted", "sent", "bytes_sent", accepted=COUNT, sent=COUNT,
                                           bytes_sent=COUNT))
MODEL_VERSION = _obj("name", "version", "source", name=STR, version=STR, source=STR)

VERSION = Field("schema_version", {"const": SCHEMA_VERSION},
                f"`{SCHEMA_VERSION}`: the contract's major version (see the compatibility rules)", required=True)
RUN_FIELDS = (
    Field("run_id", STR_OR_NULL, "the MLflow run's id (null before the run exists)", required=True),
    Field("experiment_name", STR_OR_NULL, "its experiment's name (null before the run exists)", required=True),
    Field("experiment_id", STR_OR_NULL, "its experiment's id (null before the run exists)", required=True),
    Field("run_url", STR_OR_NULL, "the run's page in the MLflow UI (null before the run exists)", required=True),
)
ATTEMPT = Field("attempt", {"type": "integer", "minimum": 1},
                "which attempt at this run (1; 2 and on when a retried task continued it), from `initialized` on")
VERSION_FIELDS = (
    Field("tracking_uri", STR_OR_NULL, "with credentials, query and fragment stripped", required=True),
    Field("server_version", STR_OR_NULL, "the MLflow server's version (null before the preflight asked it)",
          required=True),
    Field("runtime_version", STR, "trainer-runtime's version", required=True),
    Field("exit_code", {"type": "integer"},
          "the process exit code the outcome maps to (always there at a terminal stage)"),
    Field("error", {**ERROR, "type": ["object", "null"]},
          "null, but when the run failed or was killed: `{type, message, hint, fault: user|platform, exit_code, "
          "traceback}` (traceback tail, secrets masked)", required=True),
)
CHIEF_FIELDS = (
    Field("final_metrics", _map(FLOAT, "metric -> the last epoch's value"),
          "the last epoch's metrics (when Keras trained)"),
    Field("callback", _obj("seconds", "epochs", "ms_per_epoch", "steps", seconds=SECONDS, epochs=COUNT,
                           ms_per_epoch=SECONDS, steps=COUNT),
          "training-thread time spent in the Keras callback: `seconds`, `epochs`, `ms_per_epoch`, `steps` "
          "(steps count only with step logging on)"),
    Field("heartbeat_interval", {"type": "number", "exclusiveMinimum": 0},
          "seconds between two heartbeats (30 by default), from `training` on"),
    Field("progress", _obj("heartbeat_at", epoch=COUNT, step=COUNT, points_accepted=COUNT, points_sent=COUNT,
                           points_pending=COUNT, heartbeat_at=TIME),
          "during training, at most every `heartbeat_interval` s: `{epoch, step, points_accepted, points_sent, "
          "points_pending, heartbeat_at}`; a `training` status whose heartbeat is older than twice the interval "
          "is stale (`trainer-runtime status` says so)"),
    Field("logging", LOGGING,
          "always present at the end, the runtime's points and everything your code logged through MLflow's API "
          "together: `accepted` = `sent` + `pending` + the sum of `rejected` (`{reason: count}`: `not_a_number`, "
          "`secret_key`, `duplicate_param`, `duplicate_metric`, `server_rejected`, `queue_full`, "
          "`artifact_too_large`, `artifact_refused`, `artifact_missing`), plus `rejected_names`, `renamed`, "
          "`truncated`, `non_finite` (logged, as MLflow stores them), `send_failures`, `outage_seconds` (an outage "
          "the run ends in included), `artifacts` (`{accepted, sent, bytes_sent}`: files your code logged)"),
    Field("tracking", TRACKING,
          "during training, `{state: \"ok\", spool_dir}`, plus `shipped` (`{spool_uri, acked, last_seq, "
          "pending_records, at}`) and `replay_command` once an outage made the runtime ship the unsent spool "
          "beside the status; while closing `{state: \"closing\", spool_dir}`; at the end `{state: \"ok\"}`, or "
          "`{state: \"degraded\", pending, run_closed, spool_dir, spool_uri, replay_command}` when the server "
          "could not take everything before the close budget ran out (`error` instead when the close itself "
          "failed; `replayed` after `trainer-runtime replay`); `close_seconds`"),
    Field("model", _obj("state", state={"enum": ["started", "recording", "recorded", "failed", "timeout"]},
                        serving_model_uri=STR, model_run_uri=STR_OR_NULL, artifacts={"type": "array", "items": STR},
                        signatures={"type": "array", "items": STR}, reason=STR, seconds=SECONDS),
          "TFX Trainer, after training: the serving model recorded by reference (`{state: recorded, "
          "serving_model_uri, model_run_uri, artifacts, signatures, seconds}`, or `failed`/`timeout` with a "
          "`reason`)"),
    Field("model_registry", _obj("state", "name", state={"enum": ["started", "registering", "registered",
                                                                  "unavailable", "failed", "timeout"]},
                                 name=STR, version=STR, source=STR, serving_model_uri=STR, reason=STR),
          "with `register_model_name`: the model's registry version (`{state: registered, name, version, "
          "source}`, or `unavailable`/`failed`/`timeout` with a `reason`); the version also goes into "
          "`mlflow_info.json` as `model_version`"),
    Field("datasets", _obj("state", state={"enum": ["logged", "failed"]}, names={"type": "array", "items": STR},
                           reason=STR),
          "the Trainer's inputs logged as MLflow datasets (`{state, names}`, or `failed` with a `reason`)"),
    Field("system_metrics", _obj("interval", "samples", "gpu", interval=SECONDS, samples=COUNT,
                                 gpu={"type": "boolean"}, gpu_devices=COUNT, gpu_off=STR),
          "the system-metrics sampler (`{interval, samples, gpu}`; `gpu_devices` when NVML found GPUs, "
          "`gpu_off` saying why there are no GPU metrics otherwise)"),
    Field("replicas", _map(_obj("stage", stage=STR_OR_NULL, exit_code={"type": ["integer", "null"]},
                                error={"type": ["object", "null"], "properties": {"type": STR_OR_NULL,
                                                                                   "message": STR_OR_NULL}},
                                unreadable=STR), "replica name -> its ending"),
          "distributed training, when the chief's training failed or was stopped: each other replica's ending as "
          "its own status file said then, `{\"worker-1\": {stage, exit_code, error: {type, message}}}`"),
    Field("trials", _obj("count", "completed", "failed", "not_created", "runs", "state", "pending", "unsent",
                         count=COUNT, completed=COUNT, failed=COUNT, not_created=COUNT,
                         runs=_map(STR, "trial id -> its nested run's id"), state={"enum": ["ok", "degraded"]},
                         pending=COUNT, unsent={"type": "array", "items": _obj(
                             "trial_id", "run_id", "pending", "run_closed", "spool_dir", trial_id=STR, run_id=STR,
                             pending=COUNT, run_closed={"type": "boolean"}, spool_dir=STR, spool_uri=STR,
                             replay_command=STR)}),
          "TFX Tuner: its trials as nested runs, `{count, completed, failed, not_created, runs: {trial_id: "
          "run_id}, state: ok|degraded, pending, unsent}` (`unsent`: each trial run not all on the server, with "
          "its `spool_uri` and `replay_command`)"),
    Field("best", _obj(trial_id=STR, score={"anyOf": [FLOAT, {"type": "null"}]}, run_id=STR_OR_NULL,
                       hyperparameters=_map(ANY, "hyperparameter -> value"), artifact_error=STR),
          "TFX Tuner: the best trial, `{trial_id, score, run_id, hyperparameters}`, and `artifact_error` when "
          "`best_hyperparameters.json` could not be logged"),
)
REPLICA_FIELDS = (
    Field("replica", {"type": "string", "pattern": r"^.+-[0-9]+$"},
          "this replica, `<task_type>-<task_index>` (e.g. `worker-1`)", required=True),
    Field("task_type", STR, "its task type (`worker`, `ps`, `evaluator`, …)", required=True),
    Field("task_index", COUNT, "its index among the replicas of that type", required=True),
    Field("cluster", _map(COUNT, "task type -> number of replicas"),
          "the cluster's shape, `{task_type: replicas}`", required=True),
    Field("source", {"enum": [envvars.TF_CONFIG, envvars.CLUSTER_SPEC]},
          "where the cluster was read: `TF_CONFIG`, else Vertex's `CLUSTER_SPEC`", required=True),
)
INFO_FIELDS = (
    Field("run_id", STR, "the MLflow run's id", required=True),
    Field("experiment_id", STR, "its experiment's id", required=True),
    Field("experiment_name", STR, "its experiment's name", required=True),
    Field("tracking_uri", STR, "with credentials, query and fragment stripped", required=True),
    Field("run_url", STR, "the run's page in the MLflow UI", required=True),
    Field("model_version", MODEL_VERSION,
          "TFX Trainer with `register_model_name`: the registered version, `{name, version, source}`"),
)

DOCUMENTS = {d.name: d for d in (
    Document("mlflow_status", "mlflow_status.json", "A run's status, rewritten at every stage.",
             (VERSION, *_stage_fields(STAGES), *RUN_FIELDS, ATTEMPT, *VERSION_FIELDS, *CHIEF_FIELDS), STAGES),
    Document("mlflow_info", "mlflow_info.json", "The MLflow run, written as soon as it exists.", INFO_FIELDS),
    Document("mlflow_status.replica", "mlflow_status.<type>-<index>.json",
             "How a replica of a distributed training that is not the chief ended.",
             (VERSION, *_stage_fields(REPLICA_STAGES), *RUN_FIELDS, *VERSION_FIELDS, *REPLICA_FIELDS),
             REPLICA_STAGES),
)}
_REPLICA_FILE = re.compile(r"^mlflow_status\.[^.]+-[0-9]+\.json$")


def compatibility_rules() -> list[str]:
    """The compatibility rules, one string per rule, as this module's docstring states them."""
    section = (__doc__ or "").split(f"Compatibility (schema_version {SCHEMA_VERSION}):", 1)[1]
    return [" ".join(rule.replace("``", "`").split()) for rule in section.split("\n- ")[1:]]


def document_of(file_name: str) -> str | None:
    """Which document a status file is, by its name; None for any other file."""
    for document in DOCUMENTS.values():
        if document.file == file_name:
            return document.name
    return "mlflow_status.replica" if _REPLICA_FILE.match(file_name) else None


def schema(document: str, strict: bool = False) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``document`` (a key of ``DOCUMENTS``).

    Published (``strict=False``), it allows fields it does not declare, as the compatibility
    rules promise readers. ``strict=True`` refuses them in every object of known fields, for
    the runtime's own tests: nothing the runtime writes may be undocumented.
    """
    doc = DOCUMENTS[document]
    suffix = ".strict" if strict else ""
    out: dict[str, Any] = {
        "$schema": DRAFT, "$id": f"{ID_BASE}/{doc.name}.v{SCHEMA_VERSION}{suffix}.json",
        "title": doc.file, "description": " ".join([doc.summary, *compatibility_rules()]),
        "type": "object", "required": [f.name for f in doc.fields if f.required],
        "properties": {f.name: _described(f) for f in doc.fields},
    }
    if doc.stages is not None:
        errored = [s for s in ERRORED if s in doc.stages]
        out["allOf"] = [
            {"if": {"required": ["stage"], "properties": {"stage": {"enum": [s for s in TERMINAL if s in doc.stages]}}},
             "then": {"required": ["exit_code"]}},
            {"if": {"required": ["stage"], "properties": {"stage": {"enum": errored}}},
             "then": {"properties": {"error": {"type": "object"}}},
             "else": {"properties": {"error": {"type": "null"}}}},
        ]
    return _closed(out) if strict else out


def _described(field: Field) -> dict[str, Any]:
    fragment = copy.deepcopy(field.schema)
    note = fragment.get("description")
    fragment["description"] = f"{field.meaning} ({note})" if note else field.meaning
    return fragment


def _closed(fragment: Any) -> Any:
    """``fragment`` with ``additionalProperties: false`` in every object of known fields that does
    not say otherwise (conditions under ``allOf`` name properties without being objects: untouched)."""
    if isinstance(fragment, list):
        return [_closed(item) for item in fragment]
    if not isinstance(fragment, dict):
        return fragment
    out = {key: _closed(value) for key, value in fragment.items()}
    types = out.get("type")
    is_object = types == "object" or (isinstance(types, list) and "object" in types)
    if is_object and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out
