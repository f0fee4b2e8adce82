"""The Keras callback that sends training metrics to MLflow without slowing training.

Works with tf-keras (``TF_USE_LEGACY_KERAS=1``, what TFRS needs) and Keras 3:
one framework-free core, wrapped in a subclass of whichever ``Callback`` base
the model uses. On the training thread it only converts the values it logs and
puts them on the run's MetricsLogger queue.

Steps: per-epoch metrics use the epoch index (0-based, continuing across
several ``fit`` calls); optional every-N-steps metrics are named ``step/<name>``
at the global step. An attempt that continues a run (a retried task) goes on
after the run's last steps (``resume``), never back over them.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

from trainer_runtime.tracking.logger import to_float

log = logging.getLogger(__name__)

MARKER = "_trainer_runtime_callback"


def _float_or_raw(value: Any) -> Any:
    """``value`` as a float, or as given when it is not a number (the logger drops and reports it once)."""
    try:
        return to_float(value)
    except (TypeError, ValueError):
        return value


class CallbackCore:
    """Shared by every callback instance of one run (so epochs continue across fit calls)."""

    def __init__(self, logger: Any, every_n_steps: int = 0,
                 stop_check: Callable[[str], None] | None = None) -> None:
        self.logger = logger
        self.every_n_steps = every_n_steps
        #: raises when a stop signal came and the training went on (``SignalState.raise_if_ignored``)
        self.stop_check = stop_check or (lambda where: None)
        self.epoch_offset = 0
        #: the lowest step the next epoch may take: epoch steps only ever go forward
        self.next_epoch_step = 0
        self.epochs_seen = 0
        self.global_step = 0
        self.final_metrics: dict[str, float] = {}
        self.fits = 0
        self.epochs_total = 0
        #: time spent in our hooks on the training thread (what training pays for tracking)
        self.seconds = 0.0
        #: the last epoch step at which this callback logged each key, and at which user code
        #: (autolog, MLflow's API) did: one point per key and step, whoever logs it first
        self._mine: dict[str, int] = {}
        self._theirs: dict[str, int] = {}

    def claimed(self, key: str, step: int) -> bool:
        """User code logs ``key`` at ``step`` through MLflow: True when this callback already did
        (the user's point is then dropped); else it is the user's, and the callback will skip it."""
        if self._mine.get(key) == step:
            return True
        self._theirs[key] = step
        return False

    def resume(self, epoch_step: int, global_step: int) -> None:
        """Continue a run that already has epochs up to ``epoch_step - 1`` and steps up to ``global_step``.

        Whether the retried training starts again at epoch 0 or Keras' ``BackupAndRestore``
        restores it at a later epoch, its first epoch is logged at ``epoch_step`` or after.
        """
        self.next_epoch_step = max(self.next_epoch_step, epoch_step)
        self.global_step = max(self.global_step, global_step)

    def train_begin(self, params: dict[str, Any], model: Any) -> None:
        self.stop_check("a fit began")
        self.fits += 1
        self.epochs_seen = 0
        prefix = "keras." if self.fits == 1 else f"keras.fit{self.fits}."
        values = {f"{prefix}epochs": params.get("epochs"), f"{prefix}steps_per_epoch": params.get("steps")}
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None:
            values[f"{prefix}optimizer"] = type(optimizer).__name__
            rate = getattr(optimizer, "learning_rate", None)
            try:
                values[f"{prefix}learning_rate"] = float(rate.numpy() if hasattr(rate, "numpy") else rate)
            except (TypeError, ValueError):
                values[f"{prefix}learning_rate"] = type(rate).__name__  # a schedule
        self.logger.log_params({k: v for k, v in values.items() if v is not None})

    def batch_end(self, logs: dict[str, Any] | None) -> None:
        started = time.perf_counter()
        self.global_step += 1
        if self.every_n_steps and logs and self.global_step % self.every_n_steps == 0:
            # The raw values (tensors, often; log_metrics copies the dict): the writer thread converts them.
            self.logger.log_metrics(logs, self.global_step, prefix="step/")
        self.seconds += time.perf_counter() - started
        self.stop_check("a step ended")

    def epoch_end(self, epoch: int, logs: dict[str, Any] | None) -> None:
        started = time.perf_counter()
        self.epochs_seen = epoch + 1
        self.epochs_total += 1
        if self.epoch_offset + epoch < self.next_epoch_step:
            self.epoch_offset = self.next_epoch_step - epoch
        self.next_epoch_step = self.epoch_offset + epoch + 1
        if logs:
            step = self.epoch_offset + epoch
            values = {k: _float_or_raw(v) for k, v in logs.items()}
            self.final_metrics = {k: v for k, v in values.items() if isinstance(v, float)}
            if self._theirs:
                taken = [k for k in values if self._theirs.get(k) == step]
                for key in taken:  # user code (autolog) logged it at this step first
                    del values[key]
                if taken:
                    self.logger.counts.drop("duplicate_metric", len(taken), name=taken[0],
                                            detail="user code logged it through MLflow first")
            for key in values:
                self._mine[key] = step
            self.logger.log_metrics(values, step)
        self.seconds += time.perf_counter() - started
        self.stop_check("an epoch ended")

    def overhead(self) -> dict[str, float]:
        """Training-thread time spent in the callback, for the status file."""
        per_epoch = self.seconds / self.epochs_total if self.epochs_total else 0.0
        return {"seconds": round(self.seconds, 6), "epochs": self.epochs_total,
                "ms_per_epoch": round(per_epoch * 1000, 3), "steps": self.global_step}

    def train_end(self) -> None:
        self.epoch_offset += self.epochs_seen


def make_callback(base: type, core: CallbackCore) -> Any:
    """An instance of a ``base`` subclass (keras.callbacks.Callback of either Keras) driving ``core``."""

    class MlflowMetricsCallback(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            # Take logs as tensors: tf-keras then skips its per-step numpy sync (a wait for the
            # step to finish) for us, and the writer thread converts only the steps we log. Set on
            # the instance: tf-keras' Callback.__init__ sets it to False there, hiding a class attribute.
            self._supports_tf_logs = True
            setattr(self, MARKER, True)

        def _implements_train_batch_hooks(self) -> bool:
            return bool(core.every_n_steps)

        def on_train_begin(self, logs=None):
            core.train_begin(dict(getattr(self, "params", None) or {}), getattr(self, "model", None))

        def on_train_batch_end(self, batch, logs=None):
            core.batch_end(logs)

        def on_epoch_end(self, epoch, logs=None):
            core.epoch_end(epoch, logs)

        def on_train_end(self, logs=None):
            core.train_end()

    return MlflowMetricsCallback()
