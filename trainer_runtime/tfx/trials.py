"""A KerasTuner search, tracked: each trial a nested MLflow run of the search's run.

``TrialRuns.attach(tuner)`` wraps three of the tuner instance's own hooks
(``on_trial_begin``, ``run_trial``, ``on_trial_end``), so it works with any
``keras_tuner`` tuner (RandomSearch, Hyperband, BayesianOptimization, a subclass):

- trial begins: a nested run ``trial-<id>`` (tag ``mlflow.parentRunId``) is created
  with one bounded request (``rest.MlflowRest``, never MLflow's hidden urllib3
  retries); its ``hp.*`` params go to its own MetricsLogger and spool;
- while it runs: the runtime's Keras hook logs each epoch of every ``fit`` to it;
- trial ends: its ``score`` is logged (and, on the parent, ``trial_score`` at step
  ``<trial id>``), and the run is ended FINISHED (the oracle's COMPLETED) or FAILED,
  inside a bounded close. What a trial could not send by then stays in its spool;
  ``summary()`` reports it for the status (``trials.state`` ``degraded``).

With ``track_trials`` off no nested run is created; the parent still gets each
trial's score.
"""
from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from trainer_runtime.core.redact import strip_credentials
from trainer_runtime.core.retry import Backoff, Deadline, GaveUp, retry
from trainer_runtime.run import outcome
from trainer_runtime.tracking.logger import MetricsLogger
from trainer_runtime.tracking.rest import MlflowRest, RestError
from trainer_runtime.tracking.runs import TrackingContext, build_logger
from trainer_runtime.tracking.spool import Spool
from trainer_runtime.training import keras_hook
from trainer_runtime.training.keras_callback import CallbackCore

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"
#: seconds one trial's close may take (its pending points and its end): a down server must not stall the search.
TRIAL_CLOSE = 5.0
#: seconds for the close of a trial the search abandoned (after a signal the search's own close,
#: within the grace before SIGKILL, still has to run after it).
ABANDON_CLOSE = 3.0
#: seconds creating one trial's run may take, retries included.
CREATE_BUDGET = 10.0
#: between the tries of creating one trial's run
CREATE_BACKOFF = Backoff(initial=0.5, factor=2.0, maximum=3.0, jitter=0.2)


@dataclass
class TrialRun:
    trial_id: str
    run_id: str
    logger: MetricsLogger
    core: CallbackCore
    error: str | None = None


@dataclass
class Summary:
    """What the status says about the trials (``trials`` in mlflow_status.json)."""

    count: int = 0
    completed: int = 0
    failed: int = 0
    not_created: int = 0
    runs: dict[str, str] = field(default_factory=dict)
    unsent: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        pending = sum(u["pending"] for u in self.unsent)
        return {"count": self.count, "completed": self.completed, "failed": self.failed,
                "not_created": self.not_created, "runs": dict(self.runs),
                "state": "degraded" if self.unsent or self.not_created else "ok",
                "pending": pending, "unsent": list(self.unsent)}


class TrialRuns:
    """The search's trials as nested runs of ``ctx``'s run."""

    def __init__(self, ctx: TrackingContext, *, enabled: bool = True, rest: Any = None,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """``clock``: the runs' start times; ``monotonic`` and ``sleep``: the create retries' budget
        and waits (injectable: tests never really wait)."""
        self.ctx = ctx
        self.enabled = enabled
        self._rest = rest
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._current: TrialRun | None = None
        self.summary = Summary()

    # --- the tuner's hooks ----------------------------------------------------------
    def attach(self, tuner: Any) -> Any:
        """Wrap ``tuner``'s trial hooks (on the instance); returns ``tuner``."""
        begin, run, end = tuner.on_trial_begin, tuner.run_trial, tuner.on_trial_end

        @functools.wraps(begin)
        def on_trial_begin(trial):
            begin(trial)
            self.begin(trial.trial_id, dict(trial.hyperparameters.values))

        @functools.wraps(run)
        def run_trial(trial, *args, **kwargs):
            current = self._current
            if current is None:
                return run(trial, *args, **kwargs)
            try:
                with keras_hook.installed(current.core):
                    return run(trial, *args, **kwargs)
            except Exception as exc:  # KerasTuner catches it and marks the trial; we record why
                current.error = f"{type(exc).__name__}: {exc}"
                raise

        @functools.wraps(end)
        def on_trial_end(trial):
            try:
                end(trial)  # the oracle scores the trial here (and may decide the search has failed)
            finally:
                ended = tuner.oracle.get_trial(trial.trial_id)
                self.end(trial.trial_id, str(getattr(ended.status, "value", ended.status)), ended.score)

        tuner.on_trial_begin, tuner.run_trial, tuner.on_trial_end = on_trial_begin, run_trial, on_trial_end
        return tuner

    # --- one trial ------------------------------------------------------------------
    def begin(self, trial_id: str, hp_values: dict[str, Any]) -> None:
        """A trial starts: its nested run, with ``hp.*`` params (unless tracking trials is off)."""
        self.summary.count += 1
        self._current = None
        if not self.enabled:
            return
        run_id = self._create(trial_id)
        if run_id is None:
            self.summary.not_created += 1
            return
        self.summary.runs[trial_id] = run_id
        logger = self._logger(trial_id, run_id)
        logger.log_params({f"hp.{name}": value for name, value in hp_values.items()})
        core = CallbackCore(logger, self.ctx.log_every_n_steps)
        self.ctx.progress_source = core  # the heartbeat shows the running trial's epoch and step
        self._current = TrialRun(trial_id, run_id, logger, core)

    def end(self, trial_id: str, status: str, score: float | None) -> None:
        """A trial ended with the oracle's ``status`` (COMPLETED, FAILED, INVALID, …) and ``score``."""
        finished = status == "COMPLETED"
        if finished:
            self.summary.completed += 1
        else:
            self.summary.failed += 1
        if score is not None and finished:
            self.ctx.logger.log_metrics({"trial_score": score}, step=_step(trial_id))
        current, self._current = self._current, None
        if current is None or current.trial_id != trial_id:
            return
        if score is not None and finished:
            current.logger.log_metrics({"score": score}, step=0)
        tags = {"trainer_runtime.trial_status": status}
        if current.error:
            tags["trainer_runtime.trial_error"] = current.error[:1000]
        current.logger.set_tags(tags)
        self._close(current, outcome.mlflow_status("completed" if finished else "failed"), TRIAL_CLOSE)

    def _close(self, current: TrialRun, end_status: str, seconds: float) -> None:
        report = current.logger.close(Deadline(seconds), end_status=end_status)
        current.logger.spool.close()
        if report.pending or not report.run_closed:
            log.warning("trial %s: %s points and its end not on the server within %.0fs; they are in %s",
                        current.trial_id, report.pending, seconds, current.logger.spool.directory)
            self.summary.unsent.append({"trial_id": current.trial_id, "run_id": current.run_id,
                                        "pending": report.pending, "run_closed": report.run_closed,
                                        "spool_dir": current.logger.spool.directory})

    def abandon(self, end_status: str) -> None:
        """The search stopped inside a trial (a signal, an error KerasTuner does not catch): end
        that trial's run as ``end_status`` (KILLED, FAILED) rather than leave it RUNNING."""
        current = self._current
        if current is None:
            return
        self.summary.failed += 1
        self._current = None
        current.logger.set_tags({"trainer_runtime.trial_status": end_status})
        self._close(current, end_status, ABANDON_CLOSE)

    # --- plumbing -------------------------------------------------------------------
    def _create(self, trial_id: str) -> str | None:
        """The nested run's id, created in a few bounded tries, or None (the trial goes on untracked)."""
        rest = self._rest or MlflowRest(self.ctx.tracking_uri)
        self._rest = rest
        tags = {PARENT_TAG: self.ctx.run_id, "mlflow.runName": f"trial-{trial_id}",
                "trainer_runtime.trial_id": trial_id}
        deadline = Deadline(CREATE_BUDGET, self._monotonic)
        tried: list[int] = []

        def create(attempt: int) -> str:
            tried.append(attempt)
            timeout = min(self.ctx.config.send_timeout, max(0.1, deadline.remaining()))
            return rest.create_run(self.ctx.experiment_id, f"trial-{trial_id}", tags, int(self._clock() * 1000),
                                   timeout)

        def retrying(attempt: int, exc: BaseException, delay: float) -> None:
            log.info("creating the run of trial %s: attempt %s failed (%s); retrying in %.1fs",
                     trial_id, attempt, exc, delay)

        try:
            return retry(create, retryable=lambda exc: isinstance(exc, RestError) and exc.retryable,
                         delays=CREATE_BACKOFF.delays(), deadline=deadline, sleep=self._sleep,
                         on_retry=retrying, last_try_at_deadline=False)
        except GaveUp as gave_up:
            failure: BaseException = gave_up.last
        except RestError as exc:  # not retryable: the server refused it
            failure = exc
        log.warning("trial %s runs without its own MLflow run: creating it failed %d time(s) (%s); "
                    "its score still goes to run %s", trial_id, len(tried), failure, self.ctx.run_id)
        return None

    def _logger(self, trial_id: str, run_id: str) -> MetricsLogger:
        header = {"run_id": run_id, "experiment_id": self.ctx.experiment_id,
                  "experiment_name": self.ctx.experiment_name, "parent_run_id": self.ctx.run_id,
                  "tracking_uri": strip_credentials(self.ctx.tracking_uri)}
        spool = Spool(os.path.join(self.ctx.logger.spool.directory, f"trial-{trial_id}"), header)
        return build_logger(self.ctx.config, run_id, spool, rest=self._rest).start()


def _step(trial_id: str) -> int:
    try:
        return int(trial_id)
    except ValueError:
        return 0
