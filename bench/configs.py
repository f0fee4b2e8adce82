"""The configurations compared, what each is expected to log, and the bench's own baselines.

A configuration is one way a user could track the same fit: nothing, an ideal
in-memory copy, MLflow's own ``MlflowCallback``, this runtime, or the naive
synchronous client. ``drivers.py`` runs them.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from .workload import Workload


@dataclass(frozen=True)
class Config:
    name: str
    family: str          # none | ideal | mlflow | runtime | sync
    every_n_steps: int   # 0: per epoch only
    label: str

    def expected_points(self, workload: Workload, metrics_per_log: int) -> int | None:
        """Metric points this configuration asks the server to store for one fit (None: no server)."""
        if self.family in ("none", "ideal"):
            return None
        step_logs = workload.steps // self.every_n_steps if self.every_n_steps else 0
        # MlflowCallback logs either epochs or steps; the runtime logs epochs and, if asked, steps too (its
        # fluent row: the runtime's per-epoch callback plus the loop's own per-step calls).
        epoch_logs = workload.epochs if self.family.startswith("runtime") or not self.every_n_steps else 0
        return (step_logs + epoch_logs) * metrics_per_log


CONFIGS = (
    Config("none", "none", 0, "no tracking"),
    Config("ideal-epoch", "ideal", 0, "ideal: copy logs to a list, per epoch"),
    Config("ideal-step", "ideal", 1, "ideal: copy logs to a list, every step"),
    Config("mlflow-epoch", "mlflow", 0, "MLflow MlflowCallback, per epoch"),
    Config("mlflow-step", "mlflow", 1, "MLflow MlflowCallback, every step"),
    Config("runtime-epoch", "runtime", 0, "this runtime, per epoch (default)"),
    Config("runtime-step50", "runtime", 50, "this runtime, every 50 steps"),
    Config("runtime-step1", "runtime", 1, "this runtime, every step"),
    Config("sync-step", "sync", 1, "synchronous POST per metric, every step"),
)

#: Against the null sink (bench/sink.py): the client's own cost, with the server's taken out. The fluent rows
#: are a custom loop's ``mlflow.log_metric`` per metric per step: MLflow's client (synchronous, and
#: ``synchronous=False``) and the same calls inside a tracked run, where the runtime routes them.
SINK_CONFIGS = (
    Config("none", "none", 0, "no tracking"),
    Config("mlflow-epoch", "mlflow", 0, "MLflow MlflowCallback, per epoch"),
    Config("mlflow-step", "mlflow", 1, "MLflow MlflowCallback, every step"),
    Config("mlflow-fluent-step", "mlflow-fluent", 1, "MLflow fluent log_metric per metric, every step"),
    Config("mlflow-fluent-async-step", "mlflow-fluent-async", 1,
           "MLflow fluent log_metric(synchronous=False) per metric, every step"),
    Config("runtime-epoch", "runtime", 0, "this runtime, per epoch (default)"),
    Config("runtime-step1", "runtime", 1, "this runtime, every step"),
    Config("runtime-fluent-step", "runtime-fluent", 1,
           "this runtime, MLflow's fluent log_metric per metric every step, routed"),
)
BY_NAME = {c.name: c for c in (*CONFIGS, *SINK_CONFIGS)}

#: The configurations put through outages. The synchronous client is left out: it blocks
#: training for MLflow's whole retry budget on every metric, so one outage run takes hours.
OUTAGE_CONFIGS = ("mlflow-epoch", "mlflow-step", "runtime-epoch", "runtime-step1")


@functools.lru_cache(maxsize=None)
def _classes(base: type) -> tuple[type, type, type]:
    class IdealCallback(base):  # type: ignore[misc, valid-type]
        """The floor: hand the logs off (a dict copy into a list), as tensors, nothing else."""

        def __init__(self, per_step: bool) -> None:
            super().__init__()
            # After super().__init__(), which sets it False on the instance (a class attribute
            # is shadowed): tf-keras then hands over the tensors without a per-step numpy sync.
            self._supports_tf_logs = True
            self.per_step = per_step
            self.points: list = []

        def _implements_train_batch_hooks(self) -> bool:
            return self.per_step

        def on_train_batch_end(self, batch, logs=None):
            if self.per_step:
                self.points.append((batch, dict(logs or {})))

        def on_epoch_end(self, epoch, logs=None):
            if not self.per_step:
                self.points.append((epoch, dict(logs or {})))

    class SyncPerMetric(base):  # type: ignore[misc, valid-type]
        """The naive client: one synchronous ``log_metric`` POST per metric per step, on the training thread."""

        def __init__(self, client: Any, run_id: str) -> None:
            super().__init__()
            self.client, self.run_id, self.step = client, run_id, 0

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            for key, value in (logs or {}).items():
                self.client.log_metric(self.run_id, key, float(value), step=self.step)

    class FluentPerMetric(base):  # type: ignore[misc, valid-type]
        """A custom loop's logging: ``mlflow.log_metric`` per metric per step, each call timed on the
        training thread (``seconds``/``calls``)."""

        def __init__(self, synchronous: bool | None) -> None:
            super().__init__()
            import mlflow

            self.log_metric, self.synchronous = mlflow.log_metric, synchronous
            self.step, self.calls, self.seconds = 0, 0, 0.0

        def on_train_batch_end(self, batch, logs=None):
            import time

            self.step += 1
            kwargs = {} if self.synchronous is None else {"synchronous": self.synchronous}
            for key, value in (logs or {}).items():
                value = float(value)
                started = time.perf_counter()
                self.log_metric(key, value, step=self.step, **kwargs)
                self.seconds += time.perf_counter() - started
                self.calls += 1

    return IdealCallback, SyncPerMetric, FluentPerMetric


def fluent_callback(base: type, synchronous: bool | None) -> Any:
    return _classes(base)[2](synchronous)


def ideal_callback(base: type, per_step: bool) -> Any:
    return _classes(base)[0](per_step)


def sync_callback(base: type, client: Any, run_id: str) -> Any:
    return _classes(base)[1](client, run_id)
