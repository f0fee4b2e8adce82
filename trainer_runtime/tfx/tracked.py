"""The one way a TFX Trainer run goes through the runtime, shared by TrackedExecutor and the run_fn shim."""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Mapping

from trainer_runtime.training.wrap import train_with_callback
from trainer_runtime.core.config import RuntimeConfig
from trainer_runtime.core.errors import EXIT_CODES, UserCodeError
from trainer_runtime.run.exits import exit_with
from trainer_runtime.run.outcome import Ended
from trainer_runtime.run.session import run_session
from trainer_runtime.tfx import context, lineage
from trainer_runtime.tfx.vertex import runs_in_vertex_runner

log = logging.getLogger(__name__)


def train_tracked(load: Callable[[], RuntimeConfig], resolve_fn: Callable[[], Callable[..., Any]], fn_args: Any,
                  executor_context: Any = None, after: Callable[[], None] | None = None,
                  extra_tags: Mapping[str, str] | None = None) -> None:
    """Preflight, then ``resolve_fn()(fn_args)`` with the callback installed, then ``after()``.

    The experiment defaults to the pipeline's name and the run's name to
    ``<pipeline>-<component>-<UTC time>``. How a failure leaves (see ``leave``): in
    TFX's Vertex runner, the process exits with the outcome's exit code; elsewhere a
    failure of user code propagates as the user's own exception (so TFX fails the
    component with it), after the run was marked FAILED and the status written.
    """
    tags = {**context.tags_for(executor_context), **(extra_tags or {})}
    started = time.time()

    def load_with_defaults() -> RuntimeConfig:
        pipeline = context.pipeline_name(executor_context)
        return load().with_defaults(experiment_name=pipeline,
                                    run_name=context.default_run_name(pipeline, tags, started))

    input_dict = context.running_executor_inputs()  # the Trainer's artifacts, for data lineage

    def train(tracking):
        tracking.logger.log_params(context.params_for(fn_args))
        lineage.at_start(tracking, fn_args, input_dict, tags)
        run_fn = resolve_fn()
        log.info("Training model with %s.", getattr(run_fn, "__qualname__", run_fn))
        train_with_callback(tracking, run_fn, fn_args, every_n_steps=tracking.log_every_n_steps)
        if after is not None:
            after()
        lineage.at_end(tracking, fn_args, tags)

    leave(run_session(load_with_defaults, train, status_dir=context.status_dir_for(fn_args.model_run_dir),
                      tags=tags))


def leave(ended: Ended, component: str = "Trainer") -> None:
    """Return from a Trainer run that completed; leave a failed one, outside any ``except`` block,
    so nothing chains onto the user's error.

    - A ``SystemExit`` (``Killed`` after a signal, ``sys.exit`` in user code) goes on as it is.
    - In TFX's Vertex runner (the process exists for this component): log the error with
      its traceback, then exit with the outcome's exit code (``exits.exit_with``).
    - Elsewhere (LocalDagRunner, in the user's process): raise the user's own exception
      (a ``UserCodeError``'s cause), or the runtime's typed error.
    """
    exc = ended.error
    if exc is None or isinstance(exc, SystemExit):
        ended.unwrap()
        return
    shown = exc.__cause__ if isinstance(exc, UserCodeError) and exc.__cause__ is not None else exc
    decided = ended.outcome
    if decided.exit_code and runs_in_vertex_runner():
        meaning = EXIT_CODES.get(decided.exit_code, ("", "see the status file"))[1]
        log.error("the %s failed; exit code %d (%s)", component, decided.exit_code, meaning,
                  exc_info=(type(shown), shown, shown.__traceback__))
        exit_with(decided)
    raise shown
