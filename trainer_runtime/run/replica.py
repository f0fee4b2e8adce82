"""Replicas of a distributed training: one run, tracked by the chief; the others only say how they ended.

``session.run_session`` asks ``cluster.current`` which replica this process is and runs
every replica through the same lifecycle (signals, decision, close, exit). The chief's part
(``chief.Chief``) opens the run, with the cluster's shape as tags and, when its training fails
or is stopped, the endings the other replicas recorded. Every other replica's part is here
(``ReplicaPart``): no preflight, no MLflow run, no callback, nothing written to the chief's
status; its own ending (stage, exit code, error) goes to ``mlflow_status.<type>-<index>.json``
beside the chief's, so a worker's crash is visible where the chief's status is.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from trainer_runtime.core.config import RuntimeConfig
from trainer_runtime.run import outcome, signals
from trainer_runtime.run.cluster import Replica
from trainer_runtime.status.reporter import STATUS_FILE, StatusReporter
from trainer_runtime.status.storage import TextDir

log = logging.getLogger(__name__)

#: seconds a replica's final status write may retry: the chief's outcome does not wait for it.
FINAL_WRITE = 10.0


class NullLogger:
    """A logger that logs nothing: on a replica that does not track, the chief logs the run."""

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, Any], step: int, prefix: str = "") -> None:
        pass


@dataclass
class ReplicaContext:
    """What training code gets on a replica that is not the chief, where no run exists.

    Shaped like the parts of ``TrackingContext`` a training function touches
    (``config``, ``logger``, ``log_every_n_steps``, ``extra_status``), so the same
    training code runs on every replica; ``train_with_callback`` installs no callback here.
    """

    config: RuntimeConfig
    replica: Replica
    logger: NullLogger = field(default_factory=NullLogger)
    extra_status: dict[str, Any] = field(default_factory=dict)
    progress_source: Any = None
    #: the session sets it; no callback calls it here
    stop_check: Any = None
    training_left: Any = None
    run_id: None = None
    tracks: bool = False

    @property
    def log_every_n_steps(self) -> int:
        return 0


class ReplicaPart:
    """A replica's part of ``session.run_session``, beside ``chief.Chief``: no preflight, no run,
    no callback; its status file says it is training and then how it ended.

    Args:
        status_dir: where the chief's status goes unless the config says otherwise.
    """

    def __init__(self, role: Replica, deps: Any, status_dir: str) -> None:
        self.role, self.deps, self.status_dir = role, deps, status_dir

    def reporter(self, config: RuntimeConfig) -> StatusReporter:
        reporter = StatusReporter(self.deps.open_dir(config.status_dir or self.status_dir), config.tracking_uri,
                                  status_file=self.role.status_file())
        log.info("replica %s of a %s cluster: the chief tracks the run; this replica's ending goes to %s/%s",
                 self.role.name, _shape(self.role), reporter.directory.describe(), self.role.status_file())
        return reporter

    def open(self, config: RuntimeConfig, reporter: StatusReporter) -> ReplicaContext:
        reporter.stage("training", **self.role.describe())
        return ReplicaContext(config, self.role)

    def training(self, train: Callable[[Any], Any]) -> Callable[[Any], Any]:
        return train

    def fallback(self, exc: BaseException) -> StatusReporter | None:
        return open_reporter(self.deps.open_dir, self.status_dir, self.role.status_file())

    def close(self, reporter: StatusReporter | None, decided: outcome.Outcome, budget: signals.CloseBudget) -> None:
        """The replica's ending, retried for up to ``FINAL_WRITE`` s within the close budget; a write
        that fails is logged and never fails the replica."""
        if reporter is not None:
            reporter.finish(decided.stage, decided.error, deadline=max(1.0, min(FINAL_WRITE, budget.remaining())),
                            exit_code=decided.exit_code, **self.role.describe())


def open_reporter(open_dir: Callable[[str], TextDir], status_dir: str,
                  status_file: str = STATUS_FILE) -> StatusReporter | None:
    """A reporter for a failure recorded where the config could not say (logged, None, when even
    that destination cannot be opened)."""
    try:
        return StatusReporter(open_dir(status_dir), status_file=status_file)
    except Exception:
        log.exception("cannot open the status destination %s", status_dir)
        return None


def _shape(replica: Replica) -> str:
    return ", ".join(f"{count} {kind}" for kind, count in sorted(replica.shape.items()))


def chief_training(train: Callable[[Any], Any], status_dir: str,
                   open_dir: Callable[[str], TextDir]) -> Callable[[Any], Any]:
    """``train`` for the chief of a distributed training: when it fails or is stopped, the run's
    final status also lists how the other replicas had ended (``replicas``), so a worker's crash
    that surfaced on the chief as a collective error says which worker it was.

    Args:
        status_dir: where the chief's status goes unless its config says otherwise.
    """
    def train_as_chief(ctx: Any) -> Any:
        try:
            return train(ctx)
        except BaseException:
            try:
                endings = replica_endings(open_dir(ctx.config.status_dir or status_dir))
                ctx.extra_status["replicas"] = endings
                failed = [name for name, ending in endings.items() if ending.get("stage") in ("failed", "killed")]
                if failed:
                    log.error("replica(s) %s ended first; their status files are beside this one",
                              ", ".join(failed))
            except Exception:  # the chief's own outcome wins
                log.exception("could not read the other replicas' status files")
            raise
    return train_as_chief


def replica_endings(directory: TextDir) -> dict[str, dict[str, Any]]:
    """``{"worker-1": {stage, exit_code, error: {type, message}}}`` from the replicas' status files."""
    endings: dict[str, dict[str, Any]] = {}
    prefix = STATUS_FILE[: -len(".json")] + "."
    for name in directory.list_names(prefix):
        if name == STATUS_FILE or not name.endswith(".json"):
            continue
        try:
            status = json.loads(directory.read_text(name))
        except (OSError, ValueError) as exc:
            endings[name[len(prefix):-len(".json")]] = {"stage": None, "unreadable": str(exc)}
            continue
        error = status.get("error") or {}
        endings[status.get("replica") or name[len(prefix):-len(".json")]] = {
            "stage": status.get("stage"), "exit_code": status.get("exit_code"),
            "error": {"type": error.get("type"), "message": error.get("message")} if error else None}
    return endings
