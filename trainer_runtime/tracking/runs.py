"""The MLflow side of a run: get-or-create the experiment, open the run, close it.

Everything goes through ``MlflowClient``; no hand-written REST.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

from trainer_runtime.core import envvars
from trainer_runtime.core.config import RuntimeConfig
from trainer_runtime.core.errors import ConfigError, TrackingApiError, TrackingAuthError
from trainer_runtime.core.redact import strip_credentials
from trainer_runtime.tracking import attempts
from trainer_runtime.tracking.logger import MetricsLogger, window_records
from trainer_runtime.tracking.preflight import ExperimentLookup
from trainer_runtime.tracking.rest import MlflowRest
from trainer_runtime.tracking.spool import Spool

log = logging.getLogger(__name__)


def _api_error(action: str, exc: Exception) -> Exception:
    code = getattr(exc, "error_code", "")
    if code in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
        return TrackingAuthError(f"{action}: {code}: {exc}",
                                 hint="the identity may call the server but not do this; check the "
                                      "server's own permissions (mlflow --app-name basic-auth)")
    return TrackingApiError(f"{action}: {exc}", hint="check the tracking server's logs")


def ensure_experiment(client: Any, name: str, known: ExperimentLookup | None = None) -> str:
    """The id of experiment ``name``, created if missing. Safe when trainers race to create it.

    ``known``: the preflight's lookup of ``name`` (its API check), which saves asking again.
    """
    from mlflow.exceptions import MlflowException

    try:
        if known is None or known.experiment_id is None:
            known = _get_or_create(client, name, ask_first=known is None)
    except MlflowException as exc:
        raise _api_error(f"get-or-create experiment {name!r}", exc) from exc
    if known.lifecycle_stage == "deleted":
        raise ConfigError(f"experiment {name!r} (id {known.experiment_id}) is deleted",
                          hint=f"restore it (mlflow experiments restore --experiment-id "
                               f"{known.experiment_id}) or choose another experiment name")
    return known.experiment_id


def _get_or_create(client: Any, name: str, ask_first: bool) -> ExperimentLookup:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name) if ask_first else None
    if experiment is None:
        try:
            return ExperimentLookup(client.create_experiment(name))
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            log.info("experiment %r was created concurrently; using it", name)
            experiment = client.get_experiment_by_name(name)
    if experiment is None:
        raise TrackingApiError(f"experiment {name!r} vanished right after it was created",
                               hint="another process may be deleting experiments; check the server")
    return ExperimentLookup(experiment.experiment_id, experiment.lifecycle_stage)


def open_run(client: Any, experiment_id: str, run_id: str | None, run_name: str | None,
             tags: dict[str, str], run_key: str | None = None) -> Any:
    """Open the run this attempt logs to, as the server holds it.

    ``run_id`` (``MLFLOW_RUN_ID``) wins; else the run whose ``trainer_runtime.run_key``
    tag is ``run_key`` in this experiment (a retried task: the first attempt opened it);
    else a new run. An existing run is set RUNNING again, gets ``tags`` and one more
    ``trainer_runtime.tracking.attempts``; a new one starts at 1.
    """
    from mlflow.entities import RunStatus, RunTag
    from mlflow.exceptions import MlflowException

    run_id_given = bool(run_id)
    try:
        existing = None
        if run_id:
            try:
                existing = client.get_run(run_id)
            except MlflowException as exc:
                if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                    raise ConfigError(f"MLFLOW_RUN_ID={run_id} does not exist on this server",
                                      hint="unset MLFLOW_RUN_ID to create a new run, or pass an existing id"
                                      ) from exc
                raise
        elif run_key:
            existing = find_run(client, experiment_id, run_key)
        if existing is None:
            keyed = {attempts.RUN_KEY_TAG: run_key} if run_key else {}
            # the server answers with the run it created (info and tags): no read-back needed
            return client.create_run(experiment_id, run_name=run_name,
                                     tags={**tags, **keyed, attempts.ATTEMPTS_TAG: "1"})
        run_id = existing.info.run_id
        attempt = attempts.attempts_of(existing) + 1
        if attempt > 1:
            log.warning("attempt %d at MLflow run %s (found by %s; it was %s): continuing it", attempt, run_id,
                        envvars.MLFLOW_RUN_ID if run_id_given else f"run key {run_key}", existing.info.status)
        if existing.info.status != "RUNNING":
            client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        tags = {**tags, attempts.ATTEMPTS_TAG: str(attempt)}
        client.log_batch(run_id, tags=[RunTag(key, value) for key, value in tags.items()])
        return client.get_run(run_id)
    except MlflowException as exc:
        raise _api_error("open the run", exc) from exc


def find_run(client: Any, experiment_id: str, run_key: str) -> Any:
    """The run of ``experiment_id`` tagged with ``run_key`` (the oldest, should there be several), or None."""
    from mlflow.entities import ViewType

    runs = client.search_runs([experiment_id], filter_string=attempts.search_filter(run_key),
                              run_view_type=ViewType.ACTIVE_ONLY, max_results=10,
                              order_by=["attributes.start_time ASC"])
    if len(runs) > 1:
        log.warning("%d runs carry run key %s; continuing the oldest, %s", len(runs), run_key, runs[0].info.run_id)
    return runs[0] if runs else None


def default_spool_dir(run_id: str) -> str:
    """Local disk of the task (the container's own, on Vertex); uploaded beside the status if needed."""
    return os.path.join(tempfile.gettempdir(), "trainer-runtime", f"spool-{run_id}")


def build_logger(config: RuntimeConfig, run_id: str, spool: Spool, rest: MlflowRest | None = None) -> MetricsLogger:
    """A logger (not started) of ``run_id`` spooling to ``spool``, sized and timed by ``config``:
    the run's own, a Tuner trial's, or replay's. ``rest``: the client to send with (default: a new
    one for the config's tracking URI)."""
    return MetricsLogger(rest or MlflowRest(config.tracking_uri), run_id, spool, max_queue=config.queue_size,
                         send_timeout=min(config.send_timeout, config.request_timeout),
                         memory_window=window_records(config.spool_memory_mb))


@dataclass
class TrackingContext:
    """Everything known about the open run; owns its background logger and spool."""

    client: Any
    config: RuntimeConfig
    experiment_id: str
    experiment_name: str
    run_id: str
    run_name: str | None
    server_version: str
    auth_mode: str
    identity: str | None = None
    #: the run's artifact root, as the server answered when the run was opened (None: ask it)
    artifact_uri: str | None = None
    #: which attempt at this run this is (``attempts``): 1, or more when a retried task reattached to it
    attempt: int = 1
    #: where a continued run's steps go on: the first epoch step, and the global step so far
    resume_epoch_step: int = 0
    resume_global_step: int = 0
    #: extra fields for the terminal status (e.g. final_metrics from the Keras callback).
    extra_status: dict[str, Any] = field(default_factory=dict)
    #: what the training reports as progress (the Keras callback's core), for the heartbeat.
    progress_source: Any = None
    #: called at the training's safe points (the Keras callback); raises when a stop signal came and the
    #: training went on (``signals.SignalState.raise_if_ignored``, set by the session)
    stop_check: Any = None
    #: called when the training's code returned or raised (``signals.SignalState.training_left``)
    training_left: Any = None
    #: extra fields for mlflow_info.json, rewritten at the close (e.g. the registered model_version).
    extra_info: dict[str, Any] = field(default_factory=dict)
    #: the run's system-metrics sampler (``system_metrics.SystemMetrics``), stopped by the close.
    system_metrics: Any = None
    #: ships the unsent spool beside the status during an outage (``shipping.SpoolShipper``), stopped by the close.
    shipper: Any = None
    _logger: MetricsLogger | None = field(default=None, repr=False)

    @property
    def tracking_uri(self) -> str:
        return self.config.tracking_uri

    @property
    def log_every_n_steps(self) -> int:
        return self.config.log_every_n_steps

    @property
    def run_url(self) -> str:
        return f"{strip_credentials(self.tracking_uri)}/#/experiments/{self.experiment_id}/runs/{self.run_id}"

    def info(self) -> dict[str, str]:
        """The content of mlflow_info.json."""
        return {"run_id": self.run_id, "experiment_id": self.experiment_id,
                "experiment_name": self.experiment_name,
                "tracking_uri": strip_credentials(self.tracking_uri), "run_url": self.run_url, **self.extra_info}

    def start_logger(self) -> MetricsLogger:
        """Build the run's background logger, spooling to local disk, and start it (its writer and
        sender threads); the logger already started, if it was. Returns it."""
        if self._logger is None:
            header = {"run_id": self.run_id, "experiment_id": self.experiment_id,
                      "experiment_name": self.experiment_name,
                      "tracking_uri": strip_credentials(self.tracking_uri)}
            spool = Spool(self.config.spool_dir or default_spool_dir(self.run_id), header)
            self._logger = build_logger(self.config, self.run_id, spool).start()
        return self._logger

    @property
    def logger(self) -> MetricsLogger:
        """The run's background logger, once :meth:`start_logger` started it.

        Raises:
            RuntimeError: it was not started yet.
        """
        if self._logger is None:
            raise RuntimeError(f"the logger of run {self.run_id} was not started: call "
                               "TrackingContext.start_logger() first (the session does, before training)")
        return self._logger

    def progress(self) -> dict[str, Any]:
        """Epoch, step and points pending, for the heartbeat."""
        progress: dict[str, Any] = {}
        core = self.progress_source
        if core is not None:
            progress.update(epoch=core.epochs_total, step=core.global_step)
        if self._logger is not None:
            progress.update(self._logger.progress())
        return progress
