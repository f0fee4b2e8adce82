"""The user's training module for multi-worker training: a TFX ``run_fn`` under MultiWorkerMirroredStrategy.

Every replica of the training cluster runs this same ``run_fn``, with its own
``TF_CONFIG``. TFX leaves it to the module to write the model once: every
replica takes part in saving (the save is collective), and only the chief's copy
goes to ``fn_args.serving_model_dir``. Nothing here knows about MLflow or
trainer-runtime. Self-contained (TFX packs module files as top-level modules in
a wheel). Data: the retrieval example's interactions (``user_id``, ``item_id``),
learned as "which item does this user pick".
"""
from __future__ import annotations

N_USERS = 40
N_ITEMS = 60
GLOBAL_BATCH = 64


def _dataset(file_patterns, batch_size):
    import tensorflow as tf

    files = [f for pattern in file_patterns for f in tf.io.gfile.glob(pattern)]
    spec = {"user_id": tf.io.FixedLenFeature([], tf.string), "item_id": tf.io.FixedLenFeature([], tf.string)}

    def to_ids(record):
        example = tf.io.parse_single_example(record, spec)
        number = lambda text: tf.strings.to_number(tf.strings.substr(text, 1, 4), tf.int32)  # noqa: E731 - "u12" -> 12
        return number(example["user_id"]), number(example["item_id"])

    options = tf.data.Options()
    # One file per split: shard by example, not by file, across the replicas.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP").map(to_ids).shuffle(2048, seed=7)
    ds = ds.repeat().batch(batch_size)
    return ds.with_options(options)


def build_model(embedding_dim: int = 16):
    import tensorflow as tf

    model = tf.keras.Sequential([tf.keras.Input(shape=(), dtype=tf.int32),
                                 tf.keras.layers.Embedding(N_USERS, embedding_dim),
                                 tf.keras.layers.Dense(N_ITEMS)])
    # Users pick items near 2 * user: the right item is rarely the only likely one, so top-5 it is.
    model.compile(optimizer=tf.keras.optimizers.Adam(0.02),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[tf.keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top_5_accuracy")])
    return model


def train(fn_args, callbacks=()):
    """Train on every replica; write the model from the chief. Returns the strategy."""
    import tempfile

    import tensorflow as tf

    config = fn_args.custom_config or {}
    epochs = int(config.get("epochs", 3))
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = build_model()
    model.fit(_dataset(fn_args.train_files, GLOBAL_BATCH), epochs=epochs,
              steps_per_epoch=max(1, fn_args.train_steps // epochs),
              validation_data=_dataset(fn_args.eval_files, GLOBAL_BATCH), validation_steps=max(1, fn_args.eval_steps),
              callbacks=list(callbacks), verbose=2)
    # TensorFlow's own rule for who writes: the chief (worker 0 when the cluster has no chief).
    chief = strategy.extended.should_checkpoint
    model.save(fn_args.serving_model_dir if chief else tempfile.mkdtemp(prefix="replica-model-"), save_format="tf")
    return strategy


def run_fn(fn_args):
    """TFX calls this with FnArgs; custom_config may carry epochs."""
    train(fn_args)
