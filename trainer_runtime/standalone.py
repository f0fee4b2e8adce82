"""Standalone path (Vertex custom job, `docker run`): run ``pkg.mod:fn`` as a tracked job."""
from __future__ import annotations

import contextlib
import sys
import time
from typing import Iterator, Sequence

from . import envvars, keras_hook
from .config import load_config
from .errors import RuntimeFailure
from .keras_callback import CallbackCore
from .outcome import decide
from .routing import Route, routed
from .session import Deps, default_status_dir, run_tracked
from .tracking import TrackingContext
from .user_code import call_user, load_function


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
    if not getattr(ctx, "tracks", True):
        return call_user(fn, *args)
    core = CallbackCore(ctx.logger, every_n_steps)
    core.resume(ctx.resume_epoch_step, ctx.resume_global_step)
    ctx.progress_source = core
    try:
        with keras_hook.installed(core), fluent_run(ctx, core):
            return call_user(fn, *args)
    finally:
        if core.final_metrics:
            ctx.extra_status["final_metrics"] = core.final_metrics
        if core.fits:
            ctx.extra_status["callback"] = core.overhead()


def run_standalone(target: str, fn_args: Sequence[str], flags: dict, deps: Deps | None = None) -> int:
    """Returns the process exit code (0 on success); see the README's exit-code table."""
    args = list(fn_args)
    if args[:1] == ["--"]:
        args = args[1:]
    deps = deps or Deps()
    # Where a config error is recorded, since the config itself could not say.
    fallback_status_dir = flags.get("status_dir") or deps.env.get(envvars.STATUS_DIR) or default_status_dir(deps.env)

    def load():
        return load_config(deps.env, None, flags)

    def train(ctx: TrackingContext):
        fn = load_function(target)
        sys.argv = [target, *args]
        return train_with_callback(ctx, fn, every_n_steps=ctx.log_every_n_steps)

    try:
        run_tracked(load, train, status_dir=fallback_status_dir,
                    tags={"trainer_runtime.path": "standalone", "trainer_runtime.target": target,
                          **vertex_job_tags(deps.env)}, deps=deps)
    except (RuntimeFailure, KeyboardInterrupt, SystemExit, Exception) as exc:
        return decide(exc).exit_code
    return 0


def vertex_job_tags(env) -> dict[str, str]:
    """Vertex custom-job ids, when the job's environment carries them."""
    return {tag: env[name] for name, tag in (("CLOUD_ML_JOB_ID", "vertex.custom_job_id"),
                                              ("CLOUD_ML_PROJECT_ID", "vertex.project")) if env.get(name)}
