"""The user's tuning module: a next-item classifier on the same interactions, tuned with KerasTuner.

A TFX ``Tuner`` calls ``tuner_fn`` and a ``Trainer`` given ``hyperparameters=
tuner.outputs["best_hyperparameters"]`` calls ``run_fn`` with the best values.
Nothing here knows about MLflow or trainer-runtime. Keras 3 (``import keras``),
not tf.keras: KerasTuner 1.4 accepts only Keras 3 models when Keras 3 is installed,
even with ``TF_USE_LEGACY_KERAS=1``. Self-contained, like model.py.
"""
from __future__ import annotations

N_USERS = 40
N_ITEMS = 60
BATCH = 64
OBJECTIVE = "val_loss"


def _dataset(file_patterns, batch_size):
    import tensorflow as tf

    items = tf.constant([f"i{i}" for i in range(N_ITEMS)])
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(items, tf.range(N_ITEMS)), -1)
    files = [f for pattern in file_patterns for f in tf.io.gfile.glob(pattern)]
    spec = {"user_id": tf.io.FixedLenFeature([], tf.string), "item_id": tf.io.FixedLenFeature([], tf.string)}

    def parse(record):
        example = tf.io.parse_single_example(record, spec)
        user = tf.strings.to_number(tf.strings.substr(example["user_id"], 1, 3), tf.int32)
        return user, table.lookup(example["item_id"])

    return tf.data.TFRecordDataset(files, compression_type="GZIP").map(parse).repeat().batch(batch_size)


def build_classifier(hp):
    """Users -> the item they pick; ``hp``: ``embedding_dim``, ``learning_rate``."""
    import keras

    model = keras.Sequential([keras.Input(shape=(), dtype="int32"),
                              keras.layers.Embedding(N_USERS, hp.Choice("embedding_dim", [8, 16])),
                              keras.layers.Dense(N_ITEMS)])
    model.compile(optimizer=keras.optimizers.Adam(hp.Choice("learning_rate", [0.01, 0.05])),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def _fit_kwargs(fn_args, epochs):
    return {"x": _dataset(fn_args.train_files, BATCH), "epochs": epochs,
            "steps_per_epoch": max(1, fn_args.train_steps // epochs),
            "validation_data": _dataset(fn_args.eval_files, BATCH), "validation_steps": max(1, fn_args.eval_steps),
            "verbose": 0}


def tuner_fn(fn_args):
    """TFX calls this with FnArgs; custom_config may carry ``trials`` (2) and ``epochs`` (2)."""
    import keras_tuner as kt
    from tfx.components.tuner.component import TunerFnResult

    config = fn_args.custom_config or {}
    tuner = kt.RandomSearch(build_classifier, objective=kt.Objective(OBJECTIVE, "min"),
                            max_trials=int(config.get("trials", 2)), seed=int(config.get("seed", 1)),
                            directory=fn_args.working_dir, project_name="next_item", overwrite=True)
    return TunerFnResult(tuner=tuner, fit_kwargs=_fit_kwargs(fn_args, int(config.get("epochs", 2))))


class _FirstFitFails:
    """A hypermodel whose first trial's fit raises (what a trial that runs out of memory looks like)."""

    fits = 0

    def __new__(cls):
        import keras_tuner as kt

        class HyperModel(kt.HyperModel):
            def build(self, hp):
                return build_classifier(hp)

            def fit(self, hp, model, *args, **kwargs):
                cls.fits += 1
                if cls.fits == 1:
                    raise ValueError("trial fit failed on purpose")
                return model.fit(*args, **kwargs)

        return HyperModel()


def tuner_fn_with_failing_trial(fn_args):
    """Like tuner_fn, but the first trial's fit raises; KerasTuner goes on with the next one."""
    import keras_tuner as kt
    from tfx.components.tuner.component import TunerFnResult

    config = fn_args.custom_config or {}
    _FirstFitFails.fits = 0
    tuner = kt.RandomSearch(_FirstFitFails(), objective=kt.Objective(OBJECTIVE, "min"),
                            max_trials=int(config.get("trials", 2)), seed=1,
                            directory=fn_args.working_dir, project_name="next_item", overwrite=True)
    return TunerFnResult(tuner=tuner, fit_kwargs=_fit_kwargs(fn_args, int(config.get("epochs", 2))))


def tuner_fn_with_slow_trial(fn_args):
    """Like tuner_fn, but each trial's first epoch takes minutes: a search to preempt mid-trial."""
    import time

    import keras

    result = tuner_fn(fn_args)
    slow = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs=None: time.sleep(300))
    result.fit_kwargs["callbacks"] = [slow]
    return result


def run_fn(fn_args):
    """Trains the classifier with the Tuner's best hyperparameters and saves it for serving."""
    import keras_tuner as kt

    config = fn_args.custom_config or {}
    hp = kt.HyperParameters.from_config(fn_args.hyperparameters) if fn_args.hyperparameters else kt.HyperParameters()
    model = build_classifier(hp)
    model.fit(**_fit_kwargs(fn_args, int(config.get("epochs", 2))))
    model.export(fn_args.serving_model_dir, verbose=False)
