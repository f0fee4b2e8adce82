"""The MLflow side of a run: get-or-create the experiment, open the run, close it.

Everything goes through ``MlflowClient``; no hand-written REST.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, TrackingApiError, TrackingAuthError
from .metrics_logger import LoggerReport, MetricsLogger
from .redact import strip_credentials

log = logging.getLogger(__name__)


def _api_error(action: str, exc: Exception) -> Exception:
    code = getattr(exc, "error_code", "")
    if code in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
        return TrackingAuthError(f"{action}: {code}: {exc}",
                                 hint="the identity may call the server but not do this; check the "
                                      "server's own permissions (mlflow --app-name basic-auth)")
    return TrackingApiError(f"{action}: {exc}", hint="check the tracking server's logs")


def ensure_experiment(client: Any, name: str) -> str:
    """The id of experiment ``name``, created if missing. Safe when trainers race to create it."""
    from mlflow.exceptions import MlflowException

    try:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            try:
                return client.create_experiment(name)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                log.info("experiment %r was created concurrently; using it", name)
                experiment = client.get_experiment_by_name(name)
    except MlflowException as exc:
        raise _api_error(f"get-or-create experiment {name!r}", exc) from exc
    if experiment is None:
        raise TrackingApiError(f"experiment {name!r} vanished right after it was created",
                               hint="another process may be deleting experiments; check the server")
    if experiment.lifecycle_stage == "deleted":
        raise ConfigError(f"experiment {name!r} (id {experiment.experiment_id}) is deleted",
                          hint=f"restore it (mlflow experiments restore --experiment-id "
                               f"{experiment.experiment_id}) or choose another experiment name")
    return experiment.experiment_id


def open_run(client: Any, experiment_id: str, run_id: str | None, run_name: str | None,
             tags: dict[str, str]) -> Any:
    """Create a run (or attach to ``run_id``) and read it back from the server."""
    from mlflow.entities import RunStatus
    from mlflow.exceptions import MlflowException

    try:
        if run_id:
            try:
                run = client.get_run(run_id)
            except MlflowException as exc:
                if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                    raise ConfigError(f"MLFLOW_RUN_ID={run_id} does not exist on this server",
                                      hint="unset MLFLOW_RUN_ID to create a new run, or pass an existing id"
                                      ) from exc
                raise
            if run.info.status != "RUNNING":
                client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            for key, value in tags.items():
                client.set_tag(run_id, key, value)
        else:
            run_id = client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
        return client.get_run(run_id)
    except MlflowException as exc:
        raise _api_error("open the run", exc) from exc


@dataclass
class TrackingContext:
    """Everything known about the open run; owns its background metrics logger."""

    client: Any
    tracking_uri: str
    experiment_id: str
    experiment_name: str
    run_id: str
    run_name: str | None
    server_version: str
    auth_mode: str
    identity: str | None = None
    queue_size: int = 10_000
    flush_timeout: float = 60.0
    log_every_n_steps: int = 0
    #: extra fields for the terminal status (e.g. final_metrics from the Keras callback).
    extra_status: dict[str, Any] = field(default_factory=dict)
    _logger: MetricsLogger | None = field(default=None, repr=False)

    @property
    def run_url(self) -> str:
        return f"{strip_credentials(self.tracking_uri)}/#/experiments/{self.experiment_id}/runs/{self.run_id}"

    def info(self) -> dict[str, str]:
        """The content of mlflow_info.json."""
        return {"run_id": self.run_id, "experiment_id": self.experiment_id,
                "experiment_name": self.experiment_name,
                "tracking_uri": strip_credentials(self.tracking_uri), "run_url": self.run_url}

    @property
    def logger(self) -> MetricsLogger:
        """The run's background logger (started on first use)."""
        if self._logger is None:
            self._logger = MetricsLogger(self.client, self.run_id, max_queue=self.queue_size)
            self._logger.start()
        return self._logger

    def finish(self, status: str) -> LoggerReport | None:
        """Drain buffered metrics (bounded by flush_timeout), then mark the run ``status``."""
        report = self._logger.close(self.flush_timeout) if self._logger else None
        try:
            self.client.set_terminated(self.run_id, status)
        except Exception as exc:
            raise _api_error(f"mark run {self.run_id} {status}", exc) from exc
        return report
