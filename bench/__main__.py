"""`make bench`: the callback's cost on a TFRS fit, and the preflight against a warm server.

All variants run in one process against one live MLflow server, interleaved and
repeated; results are ratios to the no-callback fit measured in the same run,
because the machines are noisy. Prints a table and writes bench/results.json.
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROWS, BATCH, EPOCHS, REPEATS = 15040, 64, 3, 5   # 235 steps per epoch, like the field report


def dataset():
    import random

    import tensorflow as tf

    from examples.retrieval.model import N_ITEMS, N_USERS

    rng = random.Random(7)
    users = [rng.randrange(N_USERS) for _ in range(ROWS)]
    rows = {"user_id": [f"u{u}" for u in users],
            "item_id": [f"i{(2 * u + int(rng.gauss(0, 2))) % N_ITEMS}" for u in users]}
    return tf.data.Dataset.from_tensor_slices(rows).batch(BATCH).cache()


class SyncPerMetric:
    """The naive field baseline: one synchronous POST per metric per step, on the training thread."""

    def __init__(self, base, client, run_id):
        class Callback(base):
            def on_train_batch_end(self, batch, logs=None):
                for key, value in (logs or {}).items():
                    client.log_metric(run_id, key.replace("/", "_"), float(value), step=batch)
        self.callback = Callback()


def fit_once(variant: str, client, data, epochs: int = EPOCHS) -> dict:
    import tf_keras
    import tensorflow as tf

    from examples.retrieval.model import build_model
    from trainer_runtime import keras_hook
    from trainer_runtime.keras_callback import CallbackCore
    from trainer_runtime.metrics_logger import MetricsLogger

    exp = client.get_experiment_by_name("bench") or client.get_experiment(client.create_experiment("bench"))
    run_id = client.create_run(exp.experiment_id, run_name=variant).info.run_id
    model = build_model()
    model.compile(optimizer=tf.keras.optimizers.Adagrad(0.1))
    callbacks, logger, core = [], None, None
    if variant.startswith("ours"):
        logger = MetricsLogger(client, run_id)
        logger.start()
        core = CallbackCore(logger, every_n_steps=1 if variant == "ours-every-step" else 0)
    if variant == "sync-per-metric":
        callbacks = [SyncPerMetric(tf_keras.callbacks.Callback, client, run_id).callback]
    timing = {}
    if core is not None:
        original = core.batch_end

        def timed_batch_end(logs):
            started = time.perf_counter()
            original(logs)
            timing.setdefault("batch_end", []).append(time.perf_counter() - started)
        core.batch_end = timed_batch_end
    started = time.perf_counter()
    if core is not None:
        with keras_hook.installed(core, [tf_keras]):
            model.fit(data, epochs=epochs, verbose=0)
    else:
        model.fit(data, epochs=epochs, verbose=0, callbacks=callbacks)
    fit_seconds = time.perf_counter() - started
    result = {"fit_s": fit_seconds}
    if logger is not None:
        started = time.perf_counter()
        report = logger.close(120)
        result["drain_after_fit_s"] = time.perf_counter() - started
        result["metrics_sent"] = report.metrics_sent
        result["lost"] = report.lost_at_close + report.dropped_queue_full
    if timing.get("batch_end"):
        result["train_thread_ms_per_step"] = 1000 * statistics.median(timing["batch_end"])
    client.set_terminated(run_id)
    return result


def preflight_seconds(uri: str, times: int = 10) -> list[float]:
    from trainer_runtime.config import load_config
    from trainer_runtime.session import Deps, open_tracking

    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": "bench-preflight"}
    out = []
    for _ in range(times):
        started = time.perf_counter()
        ctx = open_tracking(load_config(env), Deps(env=env))
        out.append(time.perf_counter() - started)
        ctx.finish("FINISHED")
    return out


def main() -> int:
    from mlflow import MlflowClient

    from tests.harness.servers import start_mlflow

    workdir = Path(tempfile.mkdtemp(prefix="tr-bench-"))
    server, uri = start_mlflow(workdir / "mlflow")
    try:
        client = MlflowClient(uri)
        data = dataset()
        fit_once("none", client, data, epochs=1)  # warm-up: graph building, dataset cache
        variants = ["none", "ours-per-epoch", "ours-every-step"]
        results: dict[str, list[dict]] = {v: [] for v in variants}
        for _ in range(REPEATS):
            for variant in variants:  # interleaved, so drift hits every variant alike
                results[variant].append(fit_once(variant, client, data))
        results["sync-per-metric"] = [fit_once("sync-per-metric", client, data, epochs=1)]
        base = statistics.median(r["fit_s"] for r in results["none"])
        summary = {}
        print(f"\nTFRS retrieval fit, {ROWS // BATCH} steps/epoch, {EPOCHS} epochs, median of {REPEATS}; "
              f"MLflow {uri}")
        print(f"{'variant':<18}{'fit s':>9}{'vs none':>10}{'ms/step train thread':>23}{'drain after fit s':>19}")
        for variant, rows in results.items():
            fit = statistics.median(r["fit_s"] for r in rows) * (EPOCHS if variant == "sync-per-metric" else 1)
            row = {"fit_s": fit, "ratio": fit / base,
                   "train_thread_ms_per_step": statistics.median(r.get("train_thread_ms_per_step", 0) for r in rows),
                   "drain_after_fit_s": statistics.median(r.get("drain_after_fit_s", 0) for r in rows),
                   "lost": sum(r.get("lost", 0) for r in rows)}
            summary[variant] = row
            print(f"{variant:<18}{fit:>9.2f}{row['ratio']:>9.2f}x{row['train_thread_ms_per_step']:>23.3f}"
                  f"{row['drain_after_fit_s']:>19.2f}")
        print(f"(sync-per-metric ran 1 epoch; its fit time is scaled to {EPOCHS})")
        pre = preflight_seconds(uri)
        summary["preflight_warm_local_s"] = {"median": statistics.median(pre), "max": max(pre)}
        print(f"\npreflight against a warm local server: median {statistics.median(pre) * 1000:.0f} ms, "
              f"max {max(pre) * 1000:.0f} ms over {len(pre)}")
        Path(__file__).with_name("results.json").write_text(json.dumps(summary, indent=2) + "\n")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
