"""The training every configuration runs: the TFRS retrieval model on the same in-memory rows.

A full fit is 235 steps per epoch (the field report's size) for 5 epochs; quick
mode shrinks both so a whole `make bench QUICK=1` takes minutes. Every fit
builds a fresh model, so each configuration does identical work.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Workload:
    rows: int
    batch: int
    epochs: int

    @property
    def steps_per_epoch(self) -> int:
        return self.rows // self.batch

    @property
    def steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def with_epochs(self, epochs: int) -> "Workload":
        return Workload(self.rows, self.batch, epochs)

    def as_dict(self) -> dict:
        return {**asdict(self), "steps_per_epoch": self.steps_per_epoch, "steps": self.steps}


FULL = Workload(rows=15040, batch=64, epochs=5)    # 235 steps x 5 = 1,175 steps
QUICK = Workload(rows=2560, batch=64, epochs=3)    # 40 steps x 3 = 120 steps


def dataset(workload: Workload):
    """The same rows every time (seeded), batched and cached in memory."""
    import random

    import tensorflow as tf

    from examples.retrieval.model import N_ITEMS, N_USERS

    rng = random.Random(7)
    users = [rng.randrange(N_USERS) for _ in range(workload.steps_per_epoch * workload.batch)]
    rows = {"user_id": [f"u{u}" for u in users],
            "item_id": [f"i{(2 * u + int(rng.gauss(0, 2))) % N_ITEMS}" for u in users]}
    return tf.data.Dataset.from_tensor_slices(rows).batch(workload.batch).cache()


def new_model():
    """A fresh, compiled retrieval model (what a user's run_fn builds)."""
    import tensorflow as tf

    from examples.retrieval.model import build_model

    model = build_model()
    model.compile(optimizer=tf.keras.optimizers.Adagrad(0.1))
    return model


def warm_up(data) -> None:
    """Pay TF's once-per-process costs (autograph converting Keras, ~15 s here) outside any timing."""
    new_model().fit(data.take(3), epochs=1, verbose=0)
