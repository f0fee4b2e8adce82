"""The distributed example's run_fn, plus the faults the multi-worker tests need (a real user module)."""
from __future__ import annotations

import json
import os
import time

from examples.distributed.model import run_fn, train  # noqa: F401 - run_fn is the plain case


def _replica() -> str:
    task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task") or {}
    return f"{task.get('type')}-{task.get('index')}"


def run_fn_worker_fails(fn_args):
    """The replica named in custom_config["fail_on"] raises at the end of epoch 1 (0-based)."""
    import tensorflow as tf

    fail_on = (fn_args.custom_config or {}).get("fail_on")

    class Fail(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1 and _replica() == fail_on:
                raise RuntimeError(f"{fail_on} lost its input shard")

    train(fn_args, callbacks=[Fail()])


def run_fn_slow_epochs(fn_args):
    """Each epoch takes custom_config["epoch_seconds"] more, so a test can kill the task between epochs."""
    import tensorflow as tf

    seconds = float((fn_args.custom_config or {}).get("epoch_seconds", 0))

    class Slow(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            time.sleep(seconds)

    train(fn_args, callbacks=[Slow()])
