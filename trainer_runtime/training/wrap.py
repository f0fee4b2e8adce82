"""How user training code runs inside a tracked run, on every wiring: the Keras hook installed, MLflow's
own API routed through the run's spool (``routing``), the last epoch's metrics kept for the status."""
from __future__ import annotations

import contextlib
import time
from typing import Iterator

from trainer_runtime.tracking.runs import TrackingContext
from trainer_runtime.training import keras_hook
from trainer_runtime.training.keras_callback import CallbackCore
from trainer_runtime.training.routing import Route, routed
from trainer_runtime.training.user_code import call_user


@contextlib.contextmanager
def fluent_run(ctx: TrackingContext, core: CallbackCore | None = None) -> Iterator[None]:
    """While user code runs, MLflow's API in it (mlflow.log_*, mlflow.start_run, MlflowClient(),
    autolog) logs to our run through its spool and bounded sender (``routing``) instead of
    starting a stray run or waiting out an outage inside MLflow's retries."""
    config = ctx.config
    route = Route(run_id=ctx.run_id, experiment_id=ctx.experiment_id, run_name=ctx.run_name,
                  tracking_uri=ctx.tracking_uri, artifact_uri=ctx.artifact_uri or "",
                  logger=ctx.logger, send_timeout=min(config.send_timeout, config.request_timeout),
                  artifact_max_bytes=int(config.artifact_max_mb * 1_000_000),
                  start_time_ms=int(time.time() * 1000), callback=core)
    with routed(route, enabled=config.route_mlflow and bool(ctx.artifact_uri)):
        yield


def train_with_callback(ctx: TrackingContext, fn, *args, every_n_steps: int = 0):
    """Call user code with the Keras hook installed; record the last epoch's metrics.

    On a replica that is not the chief of a distributed training (``ctx`` is a
    ``replica.ReplicaContext``) the user code runs as it is: no callback, no run.
    """
    left = getattr(ctx, "training_left", None) or (lambda: None)
    if not getattr(ctx, "tracks", True):
        try:
            return call_user(fn, *args)
        finally:
            left()
    core = CallbackCore(ctx.logger, every_n_steps, stop_check=getattr(ctx, "stop_check", None))
    core.resume(ctx.resume_epoch_step, ctx.resume_global_step)
    ctx.progress_source = core
    try:
        with keras_hook.installed(core), fluent_run(ctx, core):
            try:
                return call_user(fn, *args)
            finally:
                left()
    finally:
        if core.final_metrics:
            ctx.extra_status["final_metrics"] = core.final_metrics
        if core.fits:
            ctx.extra_status["callback"] = core.overhead()
