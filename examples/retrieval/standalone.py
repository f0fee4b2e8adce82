"""Standalone training (Vertex custom job / `docker run IMAGE run examples.retrieval.standalone:main`).

The same TFRS model as the pipeline, trained on generated in-memory interactions,
with no TFX and no MLflow code: the runtime adds tracking around it.
"""
from __future__ import annotations

import argparse
import random
import sys


def main() -> None:
    import tensorflow as tf

    from examples.retrieval.model import N_ITEMS, N_USERS, build_model

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(sys.argv[1:])
    rng = random.Random(7)
    users = [rng.randrange(N_USERS) for _ in range(1200)]
    rows = {"user_id": [f"u{u}" for u in users],
            "item_id": [f"i{(2 * u + int(rng.gauss(0, 2))) % N_ITEMS}" for u in users]}
    data = tf.data.Dataset.from_tensor_slices(rows)
    model = build_model()
    model.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate=0.1))
    model.fit(data.take(960).batch(64), validation_data=data.skip(960).batch(64), epochs=args.epochs, verbose=2)
