"""`make demo`: a real TFX pipeline (CsvExampleGen -> Tuner -> Trainer with a TFRS retrieval model),
run through trainer-runtime and tracked in MLflow: the Tuner's 2 trials as nested runs of
its search's run, the Trainer's run with every epoch's metrics.

Uses $MLFLOW_TRACKING_URI when set; otherwise starts an embedded MLflow server
(SQLite, in ./demo-output) for the length of the demo.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = Path(os.environ.get("DEMO_OUTPUT_DIR", REPO / "demo-output"))
METRICS = ("loss", "val_loss", "val_factorized_top_k/top_10_categorical_accuracy",
           "val_factorized_top_k/top_50_categorical_accuracy")


class Stages:
    def __init__(self, total: int) -> None:
        self.total, self.n, self.started = total, 0, time.monotonic()

    def __call__(self, text: str) -> None:
        self.n += 1
        print(f"\n[{self.n}/{self.total}] {text}  (t+{time.monotonic() - self.started:.0f}s)", flush=True)


def metrics_table(client, run_id: str) -> str:
    history = {name: {m.step: m.value for m in client.get_metric_history(run_id, name)} for name in METRICS}
    steps = sorted({step for values in history.values() for step in values})
    short = [name.replace("val_factorized_top_k/", "val_").replace("_categorical_accuracy", "_acc")
             for name in METRICS]
    lines = ["epoch  " + "  ".join(f"{s:>14}" for s in short)]
    for step in steps:
        lines.append(f"{step:>5}  " + "  ".join(f"{history[n].get(step, float('nan')):>14.4f}" for n in METRICS))
    return "\n".join(lines)


def trials_table(client, experiment_name: str) -> str:
    """The Tuner's search run and its trials (nested runs), as the MLflow server has them."""
    experiment = client.get_experiment_by_name(experiment_name)
    parents = client.search_runs([experiment.experiment_id], "tags.`trainer_runtime.role` = 'tuner'",
                                 order_by=["attributes.start_time DESC"], max_results=1)
    if not parents:
        return "(no Tuner run)"
    parent = parents[0]
    trials = client.search_runs([experiment.experiment_id],
                                f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
                                order_by=["attributes.run_name ASC"])
    names = sorted({k for t in trials for k in t.data.params if k.startswith("hp.")})
    lines = [f"search run {parent.info.run_name} ({parent.info.run_id}): {len(trials)} trials, "
             f"best trial {parent.data.params.get('best.trial_id')} "
             f"(score {parent.data.metrics.get('best.score', float('nan')):.4f})",
             f"{'trial':<9}{'status':<10}" + "".join(f"{n:>18}" for n in names) + f"{'score':>10}"]
    for trial in trials:
        lines.append(f"{trial.info.run_name:<9}{trial.info.status:<10}"
                     + "".join(f"{trial.data.params.get(n, '-'):>18}" for n in names)
                     + f"{trial.data.metrics.get('score', float('nan')):>10.4f}")
    return "\n".join(lines)


def _seconds_between(start: str, end: str) -> float:
    from datetime import datetime

    parse = lambda text: datetime.fromisoformat(text.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def main() -> int:
    stage = Stages(5)
    OUT.mkdir(exist_ok=True)
    server = None
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    stage("MLflow server: " + (f"using MLFLOW_TRACKING_URI={uri}" if uri else "starting an embedded one"))
    if not uri:
        from tests.harness.servers import start_mlflow

        server, uri = start_mlflow(OUT / "mlflow")
        print(f"      MLflow {uri} ready in {server.started_in:.1f}s (SQLite: {OUT / 'mlflow' / 'mlflow.db'})")
    try:
        stage("generating the interactions dataset (deterministic)")
        from examples.retrieval.data import write_interactions

        data = write_interactions(OUT / "data")
        print(f"      {data}")

        stage("building the pipeline: CsvExampleGen -> Tuner (2 trials, TrackedTunerExecutor) -> Trainer "
              "(TFRS retrieval, TrackedExecutor)")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from absl import logging as absl_logging
        from tfx import v1 as tfx

        from examples.retrieval.pipeline import create_pipeline

        absl_logging.set_verbosity(absl_logging.WARNING)
        logging.basicConfig(level=logging.INFO, format="      %(name)s: %(message)s")
        for noisy in ("absl", "tensorflow", "apache_beam", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        run_tag = time.strftime("%Y%m%d-%H%M%S")
        root = OUT / "pipelines" / run_tag
        tracking = {"tracking_uri": uri, "experiment_name": "trainer-runtime-demo"}
        pipeline = create_pipeline(
            "trainer-runtime-demo", str(root), str(data.parent),
            module_file=str(REPO / "examples" / "retrieval" / "model.py"),
            custom_config={"epochs": 3, "trainer_runtime": {**tracking,
                                                            "run_name": f"demo-{run_tag}-{uuid.uuid4().hex[:4]}",
                                                            "register_model_name": "trainer-runtime-demo"}},
            # The Tuner picks embedding_dim with a fast next-item classifier (tuning.py); the Trainer uses it.
            tuner_fn="examples.retrieval.tuning.tuner_fn",
            tuner_config={"trials": 2, "epochs": 1, "trainer_runtime": tracking},
            metadata_path=str(root / "metadata.sqlite"))

        stage("running it on LocalDagRunner (TF start-up, ExampleGen, 2 trials, then 3 epochs)")
        started = time.monotonic()
        failure = None
        try:
            tfx.orchestration.LocalDagRunner().run(pipeline)
        except Exception as exc:  # shown below with the status file, which says why
            failure = exc
        pipeline_s = time.monotonic() - started
        print(f"      pipeline finished in {pipeline_s:.0f}s")

        stage("results")
        status_files = sorted(root.glob("Trainer/model_run/*-mlflow/mlflow_status.json"))
        if not status_files:
            print(f"no status file under {root}: {failure!r}", file=sys.stderr)
            return 1
        status = json.loads(status_files[-1].read_text())
        print(f"status file : {status_files[-1]}")
        print(f"stage       : {status['stage']}")
        print(f"run URL     : {status['run_url']}")
        if status["stage"] != "completed":
            print(f"error       : {status['error']['type']}: {status['error']['message']}\n"
                  f"fix         : {status['error']['hint']}")
            return status.get("exit_code") or 1
        stamps = status["timestamps"]
        trainer_s = _seconds_between(stamps["initializing"], stamps["completed"])
        print(f"pipeline    : {pipeline_s:.0f}s wall; Trainer (preflight to completed) {trainer_s:.1f}s")
        callback = status.get("callback", {})
        print(f"callback    : {callback.get('ms_per_epoch', 0):.2f} ms per epoch on the training thread "
              f"({callback.get('epochs', 0)} epochs)")
        registry = status.get("model_registry", {})
        print(f"model       : {registry.get('name', '-')} version {registry.get('version', '-')} "
              f"({registry.get('state', 'not registered')}; source {registry.get('source', '-')})")
        print(f"datasets    : {', '.join(status.get('datasets', {}).get('names', [])) or '-'}; "
              f"system metrics: {status.get('system_metrics', {}).get('samples', 0)} samples")
        from mlflow import MlflowClient

        client = MlflowClient(uri)
        print("\nTuner trials (nested runs of the search's run, from the MLflow server):")
        print(trials_table(client, "trainer-runtime-demo"))
        print(f"Trainer run tagged with the search's run: "
              f"{client.get_run(status['run_id']).data.tags.get('trainer_runtime.tuner_run_id', '-')}")
        print("\nmetrics per epoch (from the MLflow server):")
        print(metrics_table(client, status["run_id"]))
        if server is not None:
            tools = os.environ.get("TR_TOOLS_VENV", "<tools venv>")
            print("\nThe embedded server stops now. To browse this run in the MLflow UI:\n"
                  f"  {tools}/bin/mlflow ui --backend-store-uri sqlite:///{OUT / 'mlflow' / 'mlflow.db'} "
                  f"--port 5000\n  then open http://127.0.0.1:5000 (runs are kept in demo-output/)")
        else:
            print(f"\nOpen the run in your MLflow UI: {status['run_url']}")
        return 0
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
