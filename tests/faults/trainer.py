"""The user code the fault scenarios train: a tiny tf-keras fit whose epochs take a set time.

Driven by environment variables (the scenario runner sets them):

``FAULT_EPOCHS``, ``FAULT_EPOCH_SECONDS``
    how many epochs and how long each lasts (a sleep in a callback: time, not CPU).
``FAULT_MARKS``
    a file: one JSON line per epoch (``{"epoch", "t", "keys"}``, written once every
    callback, the runtime's included, has seen that epoch) and ``{"fit_returned": t}``
    when fit returns.
    The runner times its faults on it and counts the points it expects from it.
``FAULT_EXTRA``
    ``weird``: each epoch also reports NaN, +inf, a name MLflow refuses, and in epoch 0
    10,000 distinct keys.

``fit`` runs under the runtime (``trainer-runtime run tests.faults.trainer:fit``);
``peer`` is the same fit tracked by MLflow's own ``MlflowCallback`` (the comparison
column); ``nothing`` trains nothing (start-up races).
"""
from __future__ import annotations

import json
import math
import os
import time


def _mark(entry: dict) -> None:
    path = os.environ.get("FAULT_MARKS")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def _fit(callbacks: list) -> None:
    import numpy as np
    import tf_keras as keras

    epochs = int(os.environ.get("FAULT_EPOCHS", "6"))
    seconds = float(os.environ.get("FAULT_EPOCH_SECONDS", "1"))
    extra = os.environ.get("FAULT_EXTRA", "")

    class Paced(keras.callbacks.Callback):
        """Adds the scenario's extra values to each epoch's logs (before the runtime's callback,
        which comes last, sees them); marks an epoch once every callback has seen it, i.e. at
        the next epoch's begin or at the end of fit; then lets time pass."""

        seen: dict = {}

        def on_epoch_end(self, epoch, logs=None):
            if logs is not None and extra == "weird":
                logs.update({"nan_metric": math.nan, "inf_metric": math.inf, "bad name@!": 1.0})
                if epoch == 0:
                    logs.update({f"k{i:05d}": float(i) for i in range(10_000)})
            self.seen = {"epoch": epoch, "keys": sorted((logs or {}).keys())}

        def on_epoch_begin(self, epoch, logs=None):
            if self.seen:
                _mark({**self.seen, "t": time.time()})
            time.sleep(seconds)

        def on_train_end(self, logs=None):
            if self.seen:
                _mark({**self.seen, "t": time.time()})

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x.sum(axis=1, keepdims=True) > 0).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=[Paced(), *callbacks])
    _mark({"fit_returned": time.time()})


def fit() -> None:
    _fit([])


def nothing() -> None:
    _mark({"fit_returned": time.time()})


def peer() -> None:
    """MLflow's own callback, as its docs show it (Keras 3 is what it supports; tf-keras is
    what TFRS needs, so it gets the tf-keras fit through a thin adapter of its hooks)."""
    import mlflow
    import tf_keras as keras
    from mlflow.tensorflow import MlflowCallback

    class Adapter(keras.callbacks.Callback):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def on_train_begin(self, logs=None):
            self.inner.set_model(self.model)
            self.inner.set_params(self.params)
            self.inner.on_train_begin(logs)

        def on_epoch_end(self, epoch, logs=None):
            self.inner.on_epoch_end(epoch, logs)

        def on_train_end(self, logs=None):
            self.inner.on_train_end(logs)

    mlflow.set_experiment(os.environ["MLFLOW_EXPERIMENT_NAME"])
    with mlflow.start_run() as run:
        _mark({"run_id": run.info.run_id})
        _fit([Adapter(MlflowCallback())])


if __name__ == "__main__":
    import sys

    {"peer": peer, "fit": fit, "nothing": nothing}[sys.argv[1]]()


def run_fn(fn_args) -> None:
    """The same paced fit as a TFX run_fn (the TFX wirings' scenarios); saves a model."""
    import tf_keras as keras

    _fit([])
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.save(fn_args.serving_model_dir, save_format="tf")
