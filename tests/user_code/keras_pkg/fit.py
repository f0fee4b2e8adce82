"""Standalone user code on Keras 3 as the default Keras (what TFX 1.21 gives without TF_USE_LEGACY_KERAS):
`import keras`, a small fit, and a metric of its own through MLflow's fluent API."""


def keras3():
    import os

    import keras
    import mlflow
    import numpy as np

    assert keras.__version__.startswith("3."), keras.__version__
    assert os.environ.get("TF_USE_LEGACY_KERAS") in (None, "", "0"), "run this with Keras 3 as tf.keras too"
    x = np.linspace(-1, 1, 64, dtype="float32").reshape(-1, 1)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, 2 * x, batch_size=16, epochs=2, validation_split=0.25, verbose=2)
    mlflow.log_metric("user_keras_major", float(keras.__version__.split(".")[0]))
