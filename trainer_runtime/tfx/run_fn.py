"""A run_fn shim for ``Trainer(run_fn="trainer_runtime.tfx.run_fn.run_fn")`` with the stock executor.

Your own run_fn goes in ``custom_config["trainer_runtime"]["run_fn"]`` (``pkg.mod.fn``).
Prefer ``TrackedExecutor`` (docs/user-guide.md); this exists for pipelines that
cannot set ``custom_executor_spec``. The run gets what TrackedExecutor's gets: the
``tfx.*``/``vertex.*`` tags, the pipeline's name as the default experiment, a
``<pipeline>-<component>-<UTC time>`` run name.

One Trainer is tracked once: when the shim runs inside a run already open in this
process (``default_commands`` swaps the stock executor for TrackedExecutor, which
then calls the shim as the user's run_fn), it just calls your run_fn in that run.
"""
from __future__ import annotations

import logging
from typing import Any

from trainer_runtime.core.config import load_config
from trainer_runtime.core.errors import ConfigError
from trainer_runtime.run.session import active_run
from trainer_runtime.tfx import context, tuner_link
from trainer_runtime.tfx.tracked import train_tracked
from trainer_runtime.training.user_code import load_function

log = logging.getLogger(__name__)



def _missing() -> ConfigError:
    return ConfigError("trainer_runtime.tfx.run_fn.run_fn needs your run_fn",
                       hint='custom_config={"trainer_runtime": {"run_fn": "my_pkg.model.run_fn", ...}}')


def run_fn(fn_args: Any) -> None:
    current = active_run()
    if current is not None:
        if not current.config.run_fn:
            raise _missing()
        log.info("already in MLflow run %s: calling %s in it", current.run_id, current.config.run_fn)
        load_function(current.config.run_fn)(fn_args)
        return

    state: dict = {}

    def load():
        config = load_config(context.env(), fn_args.custom_config)
        if not config.run_fn:
            raise _missing()
        state["run_fn"] = config.run_fn
        return config

    train_tracked(load, lambda: load_function(state["run_fn"]), fn_args, context.running_executor_context(),
                  extra_tags=tuner_link.tags_from_inputs(context.running_executor_inputs()))
