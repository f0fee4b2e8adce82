"""Standalone path (Vertex custom job, `docker run`): run ``pkg.mod:fn`` as a tracked job."""
from __future__ import annotations

import sys
from typing import Sequence

from . import keras_hook
from .config import load_config
from .errors import RuntimeFailure
from .keras_callback import CallbackCore
from .outcome import decide
from .session import Deps, run_tracked
from .tracking import TrackingContext
from .user_code import call_user, load_function


def train_with_callback(ctx: TrackingContext, fn, *args, every_n_steps: int = 0):
    """Call user code with the Keras hook installed; record the last epoch's metrics."""
    core = CallbackCore(ctx.logger, every_n_steps)
    try:
        with keras_hook.installed(core):
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

    def load():
        return load_config(deps.env, None, flags)

    def train(ctx: TrackingContext):
        fn = load_function(target)
        sys.argv = [target, *args]
        return train_with_callback(ctx, fn, every_n_steps=ctx.log_every_n_steps)

    try:
        run_tracked(load, train, tags={"trainer_runtime.path": "standalone",
                                       "trainer_runtime.target": target, **version_tags(deps.env)},
                    deps=deps)
    except (RuntimeFailure, KeyboardInterrupt, SystemExit, Exception) as exc:
        return decide(exc).exit_code
    return 0


def version_tags(env) -> dict[str, str]:
    from . import __version__

    tags = {"trainer_runtime.version": __version__}
    image = env.get("TRAINER_RUNTIME_IMAGE_VERSION")
    if image:
        tags["trainer_runtime.image_version"] = image
    for env_name, tag in (("CLOUD_ML_JOB_ID", "vertex.custom_job_id"),
                          ("CLOUD_ML_PROJECT_ID", "vertex.project")):
        if env.get(env_name):
            tags[tag] = env[env_name]
    return tags
