"""mlflow_status.json and mlflow_info.json: what the platform reads to learn a run's fate.

Stages: initializing -> initialized -> training -> completed | failed | killed. Every field
written is declared in ``contract``, whose schemas are published in docs/schemas/.
mlflow_info.json is written as soon as the run exists. A failed write during a
run is logged and never hides the error that ended the run; only the very first
write (before training) is fatal, so nobody trains with an unwritable destination.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
import threading
from typing import Any, Callable

from trainer_runtime import __version__
from trainer_runtime.core.errors import StatusWriteError
from trainer_runtime.core.redact import redact_tree, strip_credentials
from trainer_runtime.status import contract
from trainer_runtime.status.storage import TextDir

log = logging.getLogger(__name__)

#: the contract's version (``contract``), which every status file this runtime writes says
SCHEMA_VERSION = contract.SCHEMA_VERSION
STATUS_FILE = "mlflow_status.json"
INFO_FILE = "mlflow_info.json"
TERMINAL = contract.TERMINAL
#: a heartbeat write gives up quickly: the next one comes soon, and a close may be waiting for it.
HEARTBEAT_WRITE_SECONDS = 5.0


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _strict(obj: Any) -> Any:
    """NaN and infinities as strings ("NaN", "Infinity"): strict JSON readers (jq, JS) reject them bare."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_strict(v) for v in obj]
    return obj


class StatusReporter:
    def __init__(self, directory: TextDir, tracking_uri: str | None = None,
                 clock: Callable[[], str] = utc_now, *, status_file: str = STATUS_FILE) -> None:
        """``status_file``: another name for a replica that is not the chief (``cluster.Replica.status_file``)."""
        self.directory = directory
        self.status_file = status_file
        self._clock = clock
        self.status: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION, "stage": None, "timestamps": {},
            "run_id": None, "experiment_name": None, "experiment_id": None, "run_url": None,
            "tracking_uri": strip_credentials(tracking_uri) if tracking_uri else None,
            "server_version": None, "runtime_version": __version__, "error": None,
        }
        self.write_failures: list[str] = []
        # Heartbeats come from a background thread; a terminal write must never be overwritten
        # by a heartbeat that started before it.
        self._lock = threading.Lock()
        self.terminal = False

    @property
    def status_path(self) -> str:
        return f"{self.directory.describe()}/{self.status_file}"

    def stage(self, stage: str, *, fatal: bool = False, deadline: float | None = None, **fields: Any) -> None:
        """Move to ``stage`` and write the file. ``fatal``: raise StatusWriteError on failure."""
        with self._lock:
            self.status["stage"] = stage
            self.status["timestamps"][stage] = self._clock()
            self.status.update(fields)
            self.terminal = stage in TERMINAL
            self._write(self.status_file, self.status, fatal, deadline)

    def heartbeat(self, progress: dict[str, Any]) -> bool:
        """Record training progress with ``heartbeat_at``; skipped once the run has ended.

        Returns False when it was skipped."""
        return self._while_training(progress={**progress, "heartbeat_at": self._clock()})

    def note_tracking(self, tracking: dict[str, Any]) -> bool:
        """Replace the status's ``tracking`` during training (e.g. a shipped spool); skipped once the
        run has ended. Returns False when it was skipped."""
        return self._while_training(tracking=tracking)

    def _while_training(self, **fields: Any) -> bool:
        """Update ``fields`` and write them, quickly and never fatally, unless the run has ended."""
        with self._lock:
            if self.terminal:
                return False
            self.status.update(fields)
            self._write(self.status_file, self.status, fatal=False, deadline=HEARTBEAT_WRITE_SECONDS)
            return True

    def run_opened(self, info: dict[str, str], server_version: str, attempt: int = 1) -> None:
        """The run exists: write mlflow_info.json first, then the status (stage initialized).

        ``attempt``: which attempt at this run this is (2 when a retried task reattached to it)."""
        self._write(INFO_FILE, info, fatal=False)
        self.stage("initialized", run_id=info["run_id"], experiment_id=info["experiment_id"],
                   experiment_name=info["experiment_name"], run_url=info["run_url"],
                   tracking_uri=info["tracking_uri"], server_version=server_version, attempt=attempt)

    def write_info(self, info: dict[str, Any], deadline: float | None = None) -> None:
        """Rewrite mlflow_info.json (at the close, with what the run gained, e.g. its model version)."""
        self._write(INFO_FILE, info, fatal=False, deadline=deadline)

    def finish(self, stage: str, error: dict[str, Any] | None = None, *, deadline: float | None = None,
               **fields: Any) -> None:
        """The terminal write, retried for at most ``deadline`` seconds. Never raises: the run's
        own outcome matters more."""
        try:
            self.stage(stage, error=error, deadline=deadline, **fields)
        except Exception:  # a bug here must not hide the run's error either
            log.exception("could not record the final status %r", stage)

    def _write(self, name: str, content: dict[str, Any], fatal: bool, deadline: float | None = None) -> None:
        # Redact values, never the serialised text: a pattern must not be able to eat a quote.
        text = json.dumps(_strict(redact_tree(content)), indent=2, allow_nan=False) + "\n"
        try:
            where = self.directory.write_text(name, text, deadline=deadline)
            log.debug("wrote %s", where)
        except StatusWriteError as exc:
            self.write_failures.append(str(exc))
            if fatal:
                raise
            log.error("status not recorded (the run goes on): %s", exc)
