"""A run_fn shim for ``Trainer(run_fn="trainer_runtime.tfx.run_fn.run_fn")`` with the stock executor.

Your own run_fn goes in ``custom_config["trainer_runtime"]["run_fn"]`` (``pkg.mod.fn``).
Prefer ``TrackedExecutor`` (docs/user-guide.md); this exists for pipelines that
cannot set ``custom_executor_spec``.
"""
from __future__ import annotations

from typing import Any

from ..config import load_config
from ..errors import ConfigError
from ..user_code import load_function
from . import context
from .tracked import train_tracked


def run_fn(fn_args: Any) -> None:
    state: dict = {}

    def load():
        config = load_config(context.env(), fn_args.custom_config)
        if not config.run_fn:
            raise ConfigError("trainer_runtime.tfx.run_fn.run_fn needs your run_fn",
                              hint='custom_config={"trainer_runtime": {"run_fn": "my_pkg.model.run_fn", ...}}')
        state["run_fn"] = config.run_fn
        return config

    train_tracked(load, lambda: load_function(state["run_fn"]), fn_args)
