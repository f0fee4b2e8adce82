"""Standalone path (Vertex custom job, `docker run`): run ``pkg.mod:fn`` as a tracked job."""
from __future__ import annotations

import sys
from typing import Sequence

from trainer_runtime.core import envvars
from trainer_runtime.core.config import load_config
from trainer_runtime.run.deps import Deps, default_status_dir
from trainer_runtime.run.outcome import Outcome
from trainer_runtime.run.session import run_session
from trainer_runtime.tracking.runs import TrackingContext
from trainer_runtime.training.user_code import load_function
from trainer_runtime.training.wrap import train_with_callback


def run_standalone(target: str, fn_args: Sequence[str], flags: dict, deps: Deps | None = None) -> Outcome:
    """How the run ended (its ``exit_code``: see the README's exit-code table)."""
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

    return run_session(load, train, status_dir=fallback_status_dir,
                       tags={"trainer_runtime.path": "standalone", "trainer_runtime.target": target,
                             **vertex_job_tags(deps.env)}, deps=deps).outcome


def vertex_job_tags(env) -> dict[str, str]:
    """Vertex custom-job ids, when the job's environment carries them."""
    return {tag: env[name] for name, tag in ((envvars.CLOUD_ML_JOB_ID, "vertex.custom_job_id"),
                                              (envvars.CLOUD_ML_PROJECT_ID, "vertex.project")) if env.get(name)}
