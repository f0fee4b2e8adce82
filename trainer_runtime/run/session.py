"""One tracked run, start to end. ``run_tracked`` alone decides and records the outcome.

    initializing -> (config, status dir, auth, health, API, experiment, run) -> initialized
    -> training -> completed | failed | killed

Every path (success, user error, platform error, signal) ends the MLflow run
(when one exists) and writes the terminal status, then the original exception
propagates unchanged.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from trainer_runtime.core import logs
from trainer_runtime.core.config import RuntimeConfig
from trainer_runtime.core.errors import ConfigError
from trainer_runtime.core.redact import register_env_secrets
from trainer_runtime.core.retry import Deadline
from trainer_runtime.run import cluster, outcome, replica, signals
from trainer_runtime.run.closing import close_run
from trainer_runtime.run.heartbeat import Heartbeat
from trainer_runtime.status.reporter import StatusReporter
from trainer_runtime.status.storage import TextDir, open_dir
from trainer_runtime.tracking import attempts, auth, system_metrics
from trainer_runtime.tracking.preflight import AuthContext, Checker, check_server, mlflow_probe
from trainer_runtime.tracking.rest import settle_transport
from trainer_runtime.tracking.runs import TrackingContext, ensure_experiment, open_run
from trainer_runtime.tracking.shipping import SpoolShipper

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "trainer-runtime"


class _Process:
    """This process's run in progress and how its last run ended (one run at a time per process)."""

    active: TrackingContext | None = None
    last_outcome: outcome.Outcome | None = None


_PROCESS = _Process()


def active_run() -> TrackingContext | None:
    """The run open in this process, while its training runs (a nested Trainer shim joins it)."""
    return _PROCESS.active


def last_outcome() -> outcome.Outcome | None:
    """How the last run in this process ended, as ``run_tracked`` decided and recorded it."""
    return _PROCESS.last_outcome


def _mlflow_client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


@dataclass
class Deps:
    """What the session touches in the outside world; tests swap parts of it."""

    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    probe_factory: Callable[[str], Any] = mlflow_probe
    client_factory: Callable[[str], Any] = _mlflow_client
    token_source_factory: Callable[..., auth.GoogleIdTokenSource] = auth.GoogleIdTokenSource
    open_dir: Callable[[str], TextDir] = open_dir
    #: after a preemption signal, leave the process at once once the run is closed (tests that
    #: signal their own process turn it off).
    exit_after_signal: bool = True


def default_status_dir(env: Mapping[str, str]) -> str:
    """Standalone default: Vertex's $AIP_MODEL_DIR, else the working directory."""
    return env.get("AIP_MODEL_DIR") or os.getcwd()


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


def run_tracked(load_config: Callable[[], RuntimeConfig], train: Callable[[TrackingContext], Any], *,
                status_dir: str | None = None, tags: Mapping[str, str] | None = None,
                deps: Deps | None = None) -> Any:
    """Run ``train`` inside a tracked MLflow run and return its result.

    The one place a run's outcome is decided (``outcome.decide``) and recorded,
    on every wiring: success, user error, platform error, SIGTERM/SIGINT
    (handled here, in the main thread, for the length of the run).

    In a distributed training (``TF_CONFIG``), only the chief does all that; any
    other replica trains untracked and records its own ending (``replica.run_untracked``).

    Args:
        load_config: builds the config; a ConfigError is recorded like any failure.
        train: the training, given the open TrackingContext (a ``replica.ReplicaContext``
            on a replica that is not the chief). User code inside it should be called
            through ``user_code.call_user``.
        status_dir: where status goes unless the config says otherwise.
        tags: MLflow tags set when the run is created.

    Raises:
        Whatever ended the run, unchanged, after the status and the run were closed
        (``Killed``, a ``SystemExit``, after a signal).
    """
    deps = deps or Deps()
    register_env_secrets(deps.env)
    logs.setup(env=deps.env)  # again: under TFX, absl may have swapped the handlers since
    logs.set_run_id(None)  # lines carry a run's id from its start until the next run starts
    reporter: StatusReporter | None = None
    ctx: TrackingContext | None = None
    config: RuntimeConfig | None = None
    beat: Heartbeat | None = None
    role = cluster.current(deps.env)
    if not role.is_chief:  # a worker, ps or evaluator of a distributed training: the chief tracks the run
        return replica.run_untracked(role, load_config, train, deps=deps,
                                     status_dir=status_dir or default_status_dir(deps.env))
    if role.distributed:
        tags = {**(tags or {}), **role.tags()}
        train = replica.chief_training(train, status_dir or default_status_dir(deps.env), deps.open_dir)
    with signals.handled(deps.clock) as sig:
        try:
            try:
                config = load_config()
                logs.setup(config.log_format, deps.env, beam_level=config.beam_log_level
                           if config.sources.get("beam_log_level") != "default" else None)
                destination = config.status_dir or status_dir or default_status_dir(deps.env)
                reporter = StatusReporter(deps.open_dir(destination), config.tracking_uri)
                reporter.stage("initializing", fatal=True)
                log.info("status: %s", reporter.status_path)
                ctx = open_tracking(config, deps, tags)
                reporter.run_opened(ctx.info(), ctx.server_version, ctx.attempt)
                logs.set_run_id(ctx.run_id)
                log.info("MLflow run: %s", ctx.run_url)
                settle_transport()  # before the sender's first request races a user's mlflow.autolog()
                ctx.logger  # noqa: B018 - start the spool and sender before training
                ctx.system_metrics = system_metrics.start(ctx)
                reporter.stage("training", heartbeat_interval=config.heartbeat_interval,
                               tracking={"state": "ok", "spool_dir": ctx.logger.spool.directory})
                beat = Heartbeat(reporter.heartbeat, ctx.progress, config.heartbeat_interval).start()
                ctx.shipper = SpoolShipper(ctx.logger, reporter, config.spool_ship_interval).start()
                _PROCESS.active = ctx
                result = train(ctx)
            except BaseException as exc:
                sig.closing()
                if reporter is None and status_dir and isinstance(exc, ConfigError):
                    reporter = _fallback_reporter(deps, status_dir)
                decided = _PROCESS.last_outcome = outcome.decide(exc)
                log.error("run %s: %s", decided.stage, exc)
                close_run(ctx, reporter, decided, _budget(config, sig, deps), beat)
                if sig.received_at is not None and deps.exit_after_signal:
                    # The run and its status are closed; tearing down TF, Beam and TFX's launcher
                    # can take longer than the grace left before the platform's SIGKILL.
                    signals.exit_now(decided.exit_code)
                raise
            sig.closing()
            decided = _PROCESS.last_outcome = outcome.decide(None)
            close_run(ctx, reporter, decided, _budget(config, sig, deps), beat)
            return result
        finally:
            _PROCESS.active = None
            auth.activate(None)


def _budget(config: RuntimeConfig | None, sig: signals.SignalState, deps: Deps) -> signals.CloseBudget:
    normal = config.flush_timeout if config else RuntimeConfig.flush_timeout
    grace = config.sigterm_grace if config else RuntimeConfig.sigterm_grace
    return signals.CloseBudget(normal, grace, sig, deps.clock)


def _fallback_reporter(deps: Deps, status_dir: str) -> StatusReporter | None:
    try:
        return StatusReporter(deps.open_dir(status_dir))
    except Exception:
        log.exception("cannot open the status destination %s", status_dir)
        return None
