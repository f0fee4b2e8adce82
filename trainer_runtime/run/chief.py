"""The replica that tracks the run (every run that is not distributed is one): it opens the run
(preflight: auth, health, API, experiment, run), starts the logger, heartbeat and spool shipper,
and closes it all (``closing.close_run``) once ``session`` has decided the outcome."""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

from trainer_runtime.core import logs
from trainer_runtime.core.config import RuntimeConfig
from trainer_runtime.core.errors import ConfigError
from trainer_runtime.core.retry import Deadline
from trainer_runtime.run import outcome, replica, signals
from trainer_runtime.run.closing import close_run
from trainer_runtime.run.cluster import Replica
from trainer_runtime.run.deps import Deps
from trainer_runtime.run.heartbeat import Heartbeat
from trainer_runtime.status.reporter import StatusReporter
from trainer_runtime.tracking import attempts, auth, system_metrics
from trainer_runtime.tracking.preflight import AuthContext, Checker, check_server
from trainer_runtime.tracking.rest import settle_transport
from trainer_runtime.tracking.runs import TrackingContext, ensure_experiment, open_run
from trainer_runtime.tracking.shipping import SpoolShipper

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "trainer-runtime"


def version_tags(config: RuntimeConfig) -> dict[str, str]:
    """The runtime's and the image's versions, tagged on every run."""
    from trainer_runtime import __version__

    tags = {"trainer_runtime.version": __version__}
    if config.image_version:
        tags["trainer_runtime.image_version"] = config.image_version
    return tags


def server_checker(config: RuntimeConfig, deps: Deps, mode: str, source: auth.GoogleIdTokenSource | None,
                   identity: Callable[[], str | None]) -> Checker:
    """The health/API checker for ``config``, under one fresh preflight deadline."""
    return Checker(config.tracking_uri, deps.probe_factory(config.tracking_uri),
                   AuthContext(mode, auth.default_audience(config) if source else None, identity),
                   Deadline(config.preflight_timeout, deps.clock), config.request_timeout, sleep=deps.sleep)


def open_tracking(config: RuntimeConfig, deps: Deps, tags: Mapping[str, str] | None = None) -> TrackingContext:
    """The preflight: auth, health, a real API call, experiment, run. Raises typed errors."""
    mode, why = auth.resolve_mode(config)
    log.info("tracking %s (auth: %s, because %s)", config.tracking_uri, mode, why)
    source = None
    if mode == "google":
        source = deps.token_source_factory(auth.default_audience(config), deps.env)
        source.token()  # fail here, typed, rather than as a header MLflow silently drops
    auth.activate(source)
    identity_cache: list[str | None] = []

    def identity() -> str | None:
        if source is None:
            return None
        if not identity_cache:
            identity_cache.append(source.identity())
        return identity_cache[0]

    experiment_name = config.experiment_name or DEFAULT_EXPERIMENT
    checker = server_checker(config, deps, mode, source, identity)
    facts = check_server(checker, experiment_name)
    version = facts.version
    client = deps.client_factory(config.tracking_uri)
    experiment_id = ensure_experiment(client, experiment_name, facts.experiment)
    run = open_run(client, experiment_id, config.run_id, config.run_name,
                   {**version_tags(config), **(tags or {})},
                   run_key=attempts.run_key(config.run_key, tags or {}, deps.env))
    epoch_step, global_step = attempts.resume_point(run)
    if run.info.experiment_id != experiment_id:
        experiment_id = run.info.experiment_id
        experiment_name = client.get_experiment(experiment_id).name
        log.warning("MLFLOW_RUN_ID belongs to experiment %r; logging there", experiment_name)
    log.info("preflight ok in %.2fs: server %s, experiment %r (%s), run %s", checker.deadline.elapsed(),
             version, experiment_name, experiment_id, run.info.run_id)
    return TrackingContext(client=client, config=config, experiment_id=experiment_id,
                           experiment_name=experiment_name, run_id=run.info.run_id,
                           run_name=run.info.run_name, server_version=version, auth_mode=mode,
                           artifact_uri=run.info.artifact_uri,
                           identity=identity(), attempt=max(1, attempts.attempts_of(run)),
                           resume_epoch_step=epoch_step, resume_global_step=global_step)


class Chief:
    """The chief's part of ``session.run_session``: one per run; keeps what it opened, to close it.

    Args:
        status_dir: where the status goes unless the config says otherwise.
        fallback_dir: where a config error is recorded, since the config could not say (None: nowhere).
        tags: MLflow tags set when the run is created.
    """

    def __init__(self, role: Replica, deps: Deps, status_dir: str, fallback_dir: str | None,
                 tags: Mapping[str, str] | None) -> None:
        self.role, self.deps, self.status_dir, self.fallback_dir = role, deps, status_dir, fallback_dir
        self.tags = {**(tags or {}), **role.tags()}
        self.ctx: TrackingContext | None = None
        self.beat: Heartbeat | None = None

    def reporter(self, config: RuntimeConfig) -> StatusReporter:
        reporter = StatusReporter(self.deps.open_dir(config.status_dir or self.status_dir), config.tracking_uri)
        reporter.stage("initializing", fatal=True)
        log.info("status: %s", reporter.status_path)
        return reporter

    def open(self, config: RuntimeConfig, reporter: StatusReporter) -> TrackingContext:
        """Preflight, run, logger, system metrics, heartbeat, shipper; the status says ``training``."""
        ctx = self.ctx = open_tracking(config, self.deps, self.tags)
        reporter.run_opened(ctx.info(), ctx.server_version, ctx.attempt)
        logs.set_run_id(ctx.run_id)
        log.info("MLflow run: %s", ctx.run_url)
        settle_transport()  # before the sender's first request races a user's mlflow.autolog()
        ctx.start_logger()
        ctx.system_metrics = system_metrics.start(ctx)
        reporter.stage("training", heartbeat_interval=config.heartbeat_interval,
                       tracking={"state": "ok", "spool_dir": ctx.logger.spool.directory})
        self.beat = Heartbeat(reporter.heartbeat, ctx.progress, config.heartbeat_interval).start()
        ctx.shipper = SpoolShipper(ctx.logger, reporter, config.spool_ship_interval).start()
        return ctx

    def training(self, train: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``train``, which on the chief of a distributed training also records the other replicas'
        endings when it fails."""
        if not self.role.distributed:
            return train
        return replica.chief_training(train, self.status_dir, self.deps.open_dir)

    def fallback(self, exc: BaseException) -> StatusReporter | None:
        """Where a config error goes when the config could not say where the status goes."""
        if self.fallback_dir is None or not isinstance(exc, ConfigError):
            return None
        return replica.open_reporter(self.deps.open_dir, self.fallback_dir)

    def close(self, reporter: StatusReporter | None, decided: outcome.Outcome,
              budget: signals.CloseBudget) -> None:
        close_run(self.ctx, reporter, decided, budget, self.beat)
