"""What a Trainer run records besides its metrics: links and inputs at the start, the model at the end.

``train_tracked`` calls ``at_start`` before the user's run_fn and ``at_end``
after it returned and the model was checked. Each step is bounded and never
raises: a completed training stays completed whatever the server does now.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from trainer_runtime.tfx import links, model_record, context, inputs

log = logging.getLogger(__name__)


def at_start(ctx: Any, fn_args: Any, input_dict: Mapping[str, Any] | None, tags: dict[str, str]) -> None:
    """Link tags (added to ``tags`` for later steps) and the Trainer's inputs as datasets."""
    if not getattr(ctx, "tracks", True):
        return
    found = links.start_tags(ctx.config, tags, context.env())
    if found:
        tags.update(found)
        ctx.logger.set_tags(found)
    inputs.log_datasets(ctx, fn_args, input_dict)


def at_end(ctx: Any, fn_args: Any, tags: dict[str, str]) -> None:
    """The TensorBoard link, then the serving model by reference, its signatures and registry version."""
    if not getattr(ctx, "tracks", True):
        return
    board = links.tensorboard_tags(ctx.config, getattr(fn_args, "model_run_dir", None))
    if board:
        tags.update(board)
        ctx.logger.set_tags(board)
    serving = getattr(fn_args, "serving_model_dir", None)
    if serving:
        model_record.record(ctx, serving, getattr(fn_args, "model_run_dir", None), tags)
