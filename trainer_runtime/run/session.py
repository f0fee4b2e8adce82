"""One run, start to end, on every replica: ``run_session`` alone decides and records the outcome.

    initializing -> (config, status dir, auth, health, API, experiment, run) -> initialized
    -> training -> completed | failed | killed

The chief (``chief.Chief``) opens and closes the MLflow run; any other replica of a distributed
training (``replica.ReplicaPart``) records only its own ending. Both go through the same
lifecycle here: signals handled, the outcome decided once (``outcome.decide``), the close
inside one budget, and after a preemption signal the exit (``exits.exit_with``).
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

from trainer_runtime.core import logs
from trainer_runtime.core.config import RuntimeConfig
from trainer_runtime.core.redact import register_env_secrets
from trainer_runtime.run import cluster, outcome, signals
from trainer_runtime.run.chief import Chief
from trainer_runtime.run.deps import Deps, default_status_dir
from trainer_runtime.run.exits import exit_with
from trainer_runtime.run.replica import ReplicaPart
from trainer_runtime.status.reporter import StatusReporter
from trainer_runtime.tracking import auth
from trainer_runtime.tracking.runs import TrackingContext

log = logging.getLogger(__name__)


class _Process:
    """This process's run in progress (one run at a time per process)."""

    active: TrackingContext | None = None


_PROCESS = _Process()


def active_run() -> TrackingContext | None:
    """The run open in this process, while its training runs (a nested Trainer shim joins it)."""
    return _PROCESS.active


def run_session(load_config: Callable[[], RuntimeConfig], train: Callable[[Any], Any], *,
                status_dir: str | None = None, tags: Mapping[str, str] | None = None,
                deps: Deps | None = None) -> outcome.Ended:
    """Run ``train`` inside a tracked MLflow run; return how it ended (``outcome.Ended``).

    The one place a run's outcome is decided (``outcome.decide``) and recorded, on every
    wiring and replica: success, user error, platform error, SIGTERM/SIGINT (handled here, in
    the main thread, for the length of the run). After a signal, the process leaves here
    (``exit_with(..., at_once=True)``) once the run is closed, unless ``deps.exit_after_signal``
    is off.

    Args:
        load_config: builds the config; a ConfigError is recorded like any failure.
        train: the training, given the open TrackingContext (a ``replica.ReplicaContext``
            on a replica that is not the chief). User code inside it should be called
            through ``user_code.call_user``.
        status_dir: where status goes unless the config says otherwise; a config error is
            recorded there too.
        tags: MLflow tags set when the run is created.
    """
    deps = deps or Deps()
    register_env_secrets(deps.env)
    logs.setup(env=deps.env)  # again: under TFX, absl may have swapped the handlers since
    logs.set_run_id(None)  # lines carry a run's id from its start until the next run starts
    role = cluster.current(deps.env)
    destination = status_dir or default_status_dir(deps.env)
    part = (Chief(role, deps, destination, status_dir, tags) if role.is_chief
            else ReplicaPart(role, deps, destination))
    reporter: StatusReporter | None = None
    config: RuntimeConfig | None = None
    with signals.handled(deps.clock) as sig:
        try:
            try:
                config = load_config()
                sig.set_grace(config.sigterm_grace)
                logs.setup(config.log_format, deps.env, beam_level=config.beam_log_level
                           if config.sources.get("beam_log_level") != "default" else None)
                reporter = part.reporter(config)
                ctx = part.open(config, reporter)
                ctx.stop_check, ctx.training_left = sig.raise_if_ignored, sig.training_left
                _PROCESS.active = ctx if role.is_chief else None
                result = part.training(train)(ctx)
            except BaseException as exc:  # noqa: B036 - every ending is decided, recorded and returned
                sig.closing()
                decided = outcome.decide(exc, stopped_by=sig.signum if sig.received_at is not None else None)
                log.error("%s %s: %s", "run" if role.is_chief else f"replica {role.name}", decided.stage, exc)
                part.close(reporter or part.fallback(exc), decided, _budget(config, sig, deps))
                if sig.received_at is not None and deps.exit_after_signal:
                    # The run and its status are closed; tearing down TF, Beam and TFX's launcher
                    # can take longer than the grace left before the platform's SIGKILL.
                    exit_with(decided, at_once=True)
                return outcome.Ended(decided, error=exc)
            sig.closing()
            decided = outcome.decide(None)
            part.close(reporter, decided, _budget(config, sig, deps))
            return outcome.Ended(decided, result=result)
        finally:
            _PROCESS.active = None
            auth.activate(None)


def run_tracked(load_config: Callable[[], RuntimeConfig], train: Callable[[Any], Any], *,
                status_dir: str | None = None, tags: Mapping[str, str] | None = None,
                deps: Deps | None = None) -> Any:
    """``run_session``, for a caller that wants the training's result: whatever ended the run
    is raised unchanged, after the status and the run were closed."""
    return run_session(load_config, train, status_dir=status_dir, tags=tags, deps=deps).unwrap()


def _budget(config: RuntimeConfig | None, sig: signals.SignalState, deps: Deps) -> signals.CloseBudget:
    normal = config.flush_timeout if config else RuntimeConfig.flush_timeout
    grace = config.sigterm_grace if config else RuntimeConfig.sigterm_grace
    return signals.CloseBudget(normal, grace, sig, deps.clock)
