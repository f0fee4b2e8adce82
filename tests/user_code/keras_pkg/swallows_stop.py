"""Standalone user code whose model building catches everything, the way tf-keras 2.16 builds a
``Sequential`` model (``_build_graph_network_for_inferred_shape`` inside a bare ``except:``): a SIGTERM
that lands there is swallowed, and the training goes on to its fits."""
import sys
import time


def build_model():
    import tf_keras as keras

    try:  # announced inside the try: the test's signal may come as soon as the line is out
        print("building", flush=True)
        time.sleep(60)  # the test's SIGTERM lands here
    except:  # noqa: E722 - what the library does
        print("the stop was swallowed", flush=True)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def main():
    import numpy as np
    import tf_keras as keras

    model = build_model()
    x = np.linspace(-1, 1, 64, dtype="float32").reshape(-1, 1)
    slow = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: time.sleep(0.2))
    model.fit(x, 2 * x, batch_size=16, epochs=20, verbose=0, callbacks=[slow])
    print("trained to the end", file=sys.stderr, flush=True)


def converts_the_stop():
    """The stop lands in code that turns it into another error, the way TF's C++ layer raised a bare
    ``TypeError`` (the Killed it interrupted lost on the way) in the 1.16 image."""
    interrupted = False
    try:
        print("training", flush=True)
        time.sleep(60)
    except BaseException:  # noqa: B036 - what the library does
        interrupted = True
    if interrupted:
        raise TypeError()


def swallows_then_loops():
    """The stop is swallowed, then a loop with no Keras in it goes on (no safe point ever comes)."""
    try:
        print("training", flush=True)
        time.sleep(60)
    except:  # noqa: E722
        print("the stop was swallowed", flush=True)
    for _ in range(600):
        time.sleep(0.1)
    print("looped to the end", file=sys.stderr, flush=True)


def cleans_up_then_stops():
    """Preemption-aware code: on the stop it saves something for a second, then lets the stop go on."""
    try:
        print("training", flush=True)
        time.sleep(60)
    except BaseException:  # noqa: B036
        time.sleep(1.0)
        print("cleaned up", flush=True)
        raise
