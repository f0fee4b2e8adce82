"""The user's training module: a TFRS two-tower retrieval model with a standard TFX run_fn.

Nothing here knows about MLflow or trainer-runtime; that is the point. It must
stay self-contained (TFX packs module files as top-level modules in a wheel).
"""
from __future__ import annotations

N_USERS = 40
N_ITEMS = 60
BATCH = 64


def _dataset(file_patterns, batch_size):
    import tensorflow as tf

    files = [f for pattern in file_patterns for f in tf.io.gfile.glob(pattern)]
    spec = {"user_id": tf.io.FixedLenFeature([], tf.string), "item_id": tf.io.FixedLenFeature([], tf.string)}
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return ds.map(lambda record: tf.io.parse_single_example(record, spec)).repeat().batch(batch_size)


def build_model(embedding_dim: int = 16):
    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    users = [f"u{i}" for i in range(N_USERS)]
    items = [f"i{i}" for i in range(N_ITEMS)]

    def tower(vocabulary):
        return tf.keras.Sequential([tf.keras.layers.StringLookup(vocabulary=vocabulary, mask_token=None),
                                    tf.keras.layers.Embedding(len(vocabulary) + 1, embedding_dim)])

    class RetrievalModel(tfrs.Model):
        def __init__(self):
            super().__init__()
            self.user_model = tower(users)
            self.item_model = tower(items)
            candidates = tf.data.Dataset.from_tensor_slices(items).batch(32).map(self.item_model)
            self.task = tfrs.tasks.Retrieval(metrics=tfrs.metrics.FactorizedTopK(candidates=candidates))
            self.items = items

        def compute_loss(self, features, training=False):
            return self.task(self.user_model(features["user_id"]), self.item_model(features["item_id"]),
                             compute_metrics=not training)

    return RetrievalModel()


def run_fn(fn_args):
    """TFX calls this with FnArgs; custom_config may carry epochs and learning_rate; a Tuner's best
    hyperparameters (``fn_args.hyperparameters``) may carry embedding_dim."""
    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    config = fn_args.custom_config or {}
    epochs = int(config.get("epochs", 3))
    tuned = (fn_args.hyperparameters or {}).get("values", {})
    model = build_model(int(tuned.get("embedding_dim", 16)))
    model.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate=float(config.get("learning_rate", 0.1))))
    model.fit(_dataset(fn_args.train_files, BATCH), epochs=epochs,
              steps_per_epoch=max(1, fn_args.train_steps // epochs),
              validation_data=_dataset(fn_args.eval_files, BATCH), validation_steps=max(1, fn_args.eval_steps),
              verbose=2)

    index = tfrs.layers.factorized_top_k.BruteForce(model.user_model, k=10)
    index.index_from_dataset(tf.data.Dataset.from_tensor_slices(model.items).batch(32)
                             .map(lambda ids: (ids, model.item_model(ids))))
    index(tf.constant(["u1"]))
    tf.saved_model.save(index, fn_args.serving_model_dir)


def run_fn_that_raises(fn_args):
    raise ValueError("user code failed on purpose")


def run_fn_without_model(fn_args):
    """Returns without saving: TFX's own 'run_fn failed to generate model.' case."""


def run_fn_slow(fn_args):
    """Stands in for a long training, for the preemption (SIGTERM) test."""
    import time

    time.sleep(120)
