"""``TrackedTunerExecutor``: TFX's Tuner executor with the search tracked in MLflow.

Use it through ``Tuner(custom_executor_spec=executor_spec.ExecutorClassSpec(TrackedTunerExecutor))``
on any runner, or let ``entrypoint.py`` swap it in for the stock Tuner executor
(``tfx.components.tuner.executor.Executor``) when it is the pipeline's ``default_commands``.

It does what TFX's executor does (``tuner_fn(fn_args)`` returns the tuner and its
``fit_kwargs``; ``tuner.search(**fit_kwargs)``; the best hyperparameters and the
tuner's results written to the outputs) inside one tracked run, the search's
(``session.run_session``: preflight, status next to the output, signals, bounded
close). Each trial is a nested run of it (``trainer_runtime.tfx.trials``). The search's
run gets the best hyperparameters (``best.hp.*`` params, ``best.score``,
``best_hyperparameters.json``) and the trial counts; its id goes on the
``best_hyperparameters`` artifact (custom property ``mlflow_run_id``), where a tracked
Trainer that consumes it finds it (``tuner_link``). A trial that raises is a FAILED
nested run, and the search goes on or fails exactly as KerasTuner and TFX decide.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Dict, List

from tfx import types
from tfx.components.trainer import fn_args_utils
from tfx.components.tuner import executor as stock
from tfx.types import artifact_utils, standard_component_specs

from trainer_runtime.core.config import RuntimeConfig, load_config
from trainer_runtime.core.retry import Deadline
from trainer_runtime.run import outcome
from trainer_runtime.run.session import run_session
from trainer_runtime.tfx import context, tuner_link
from trainer_runtime.tfx.compat import warn_if_compiled_with_other_version
from trainer_runtime.tfx.executor import resolve_run_fn
from trainer_runtime.tfx.tracked import leave
from trainer_runtime.tfx.trials import TrialRuns
from trainer_runtime.tracking.rest import MlflowRest
from trainer_runtime.tracking.runs import TrackingContext
from trainer_runtime.training.user_code import call_user

log = logging.getLogger(__name__)

#: seconds the best_hyperparameters.json upload (the run's artifact URI, then the file) may hold up
#: the end of the search; each request is tried once, so a down server costs no more.
ARTIFACT_WAIT = 10.0


class TrackedTunerExecutor(stock.Executor):
    """TFX's Tuner executor whose search is one MLflow run, with a nested run per trial."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        if stock.get_tune_args(exec_properties):
            raise ValueError("TuneArgs is not supported by this Tuner's Executor.")
        fn_args = fn_args_utils.get_common_fn_args(input_dict, exec_properties, self._get_tmp_dir())
        ctx = getattr(self, "_context", None)
        best_artifact = output_dict[standard_component_specs.BEST_HYPERPARAMETERS_KEY][0]
        tags = {**context.tags_for(ctx), "trainer_runtime.role": "tuner"}
        status_dir = context.status_dir_for(artifact_utils.get_single_uri([best_artifact]))
        started = time.time()

        def load() -> RuntimeConfig:
            config = load_config(context.env(), fn_args.custom_config)
            warn_if_compiled_with_other_version(config)
            pipeline = context.pipeline_name(ctx)
            return config.with_defaults(experiment_name=pipeline,
                                        run_name=context.default_run_name(pipeline, tags, started))

        def train(tracking: TrackingContext) -> None:
            tracking.logger.log_params(context.params_for(fn_args))
            best_artifact.set_string_custom_property(tuner_link.RUN_ID_PROPERTY, tracking.run_id)
            best_artifact.set_string_custom_property(tuner_link.RUN_URL_PROPERTY, tracking.run_url)
            tuner_fn = resolve_run_fn(exec_properties, "tuner_fn")
            result = call_user(tuner_fn, fn_args)
            tuner = result.tuner
            trials = TrialRuns(tracking, enabled=tracking.config.track_trials)
            trials.attach(tuner)
            tracking.logger.log_params(search_params(tuner))
            tuner.search_space_summary()
            log.info("Start tuning... Tuner ID: %s", tuner.tuner_id)
            try:
                call_user(tuner.search, **result.fit_kwargs)
            except BaseException as exc:  # a signal or a failure mid-trial: end that trial's run too
                if tracking.training_left:
                    tracking.training_left()  # ending the trial is ours: a stop is not raised in it again
                trials.abandon(outcome.decide(exc).mlflow_status)
                raise
            finally:
                tracking.extra_status["trials"] = trials.summary.as_dict()
                record_trials(tracking, trials, tracking.config.status_dir or status_dir)
            log.info("Finished tuning... Tuner ID: %s", tuner.tuner_id)
            tuner.results_summary()
            call_user(stock.write_best_hyperparameters, tuner, output_dict)
            log_best(tracking, tuner, trials)

        leave(run_session(load, train, status_dir=status_dir, tags=tags), "Tuner")


def search_params(tuner: Any) -> Dict[str, Any]:
    """The search's own settings, as params of its run."""
    oracle = tuner.oracle
    objective = getattr(oracle, "objective", None)
    params = {"tuner.class": type(tuner).__name__, "tuner.oracle": type(oracle).__name__,
              "tuner.max_trials": getattr(oracle, "max_trials", None),
              "tuner.objective": getattr(objective, "name", None),
              "tuner.direction": getattr(objective, "direction", None),
              "tuner.executions_per_trial": getattr(tuner, "executions_per_trial", None)}
    return {key: value for key, value in params.items() if value is not None}


def record_trials(tracking: TrackingContext, trials: TrialRuns, status_dir: str) -> None:
    """The trial counts on the search's run; a trial spool that did not reach the server, uploaded
    beside the status with the command that replays it."""
    summary = trials.summary
    tracking.logger.log_metrics({"trials.count": summary.count, "trials.completed": summary.completed,
                                 "trials.failed": summary.failed}, step=0)
    status = tracking.extra_status["trials"]
    if not summary.unsent:
        return
    from trainer_runtime.status.storage import open_dir
    from trainer_runtime.tracking.shipping import ship_unacked

    for unsent in status["unsent"]:
        target = unsent["spool_dir"]
        try:
            directory = open_dir(f"{status_dir.rstrip('/')}/trial-{unsent['trial_id']}")
            unsent["spool_uri"] = ship_unacked(target, target, directory, deadline=5.0)["spool_uri"]
            target = directory.describe()
        except Exception as exc:  # the local spool is still there; the status says where
            log.error("could not upload trial %s's spool beside the status: %s", unsent["trial_id"], exc)
        unsent["replay_command"] = f"trainer-runtime replay {target}"
    log.error("tracking degraded: %d trial run(s) not fully on the server (%d points); replay with: %s",
              len(status["unsent"]), status["pending"], "; ".join(u["replay_command"] for u in status["unsent"]))


def log_best(tracking: TrackingContext, tuner: Any, trials: TrialRuns) -> None:
    """The best trial on the search's run: ``best.hp.*``, ``best.score``, ``best.trial_id``, the
    nested run it was, and ``best_hyperparameters.json`` (the config TFX writes for the Trainer)."""
    best = tuner.oracle.get_best_trials(1)
    if not best:
        return
    trial = best[0]
    params: Dict[str, Any] = {f"best.hp.{name}": value for name, value in trial.hyperparameters.values.items()}
    params["best.trial_id"] = trial.trial_id
    tracking.logger.log_params(params)
    if trial.score is not None:
        tracking.logger.log_metrics({"best.score": trial.score}, step=0)
    run_id = trials.summary.runs.get(trial.trial_id)
    if run_id:
        tracking.logger.set_tags({"trainer_runtime.best_trial_run_id": run_id})
    tracking.extra_status["best"] = {"trial_id": trial.trial_id, "score": trial.score, "run_id": run_id,
                                     "hyperparameters": dict(trial.hyperparameters.values)}
    upload_best(tracking, json.dumps(tuner.get_best_hyperparameters()[0].get_config(), indent=2, default=str))


def upload_best(tracking: TrackingContext, text: str) -> None:
    """``best_hyperparameters.json`` as an artifact of the search's run, within ARTIFACT_WAIT. Never raises."""
    deadline = Deadline(ARTIFACT_WAIT)
    try:
        api = MlflowRest(tracking.tracking_uri, ARTIFACT_WAIT)
        artifact_uri = tracking.artifact_uri or api.artifact_uri(tracking.run_id)
        api.put_artifact(artifact_uri, "best_hyperparameters.json", text.encode(), "application/json",
                         timeout=deadline.remaining())
    except Exception as exc:  # reported here; the params above carry the same values
        error = f"{type(exc).__name__}: {exc}"
        log.warning("best_hyperparameters.json not logged to run %s: %s; the best.hp.* params hold the same "
                    "values", tracking.run_id, error)
        tracking.extra_status.setdefault("best", {})["artifact_error"] = error[:300]
