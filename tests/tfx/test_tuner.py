"""Real TFX and KerasTuner: LocalDagRunner runs CsvExampleGen -> Tuner (TrackedTunerExecutor, 2 trials of a
tiny Keras 3 classifier) -> Trainer (TrackedExecutor, the best hyperparameters), against the live MLflow
server: one run for the search with a nested run per trial, and the Trainer's run linked to it."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.tfx.conftest import history_steps

pytestmark = pytest.mark.slow
MODULE = "examples.retrieval.tuning"


def run_pipeline(tmp_path: Path, data: Path, uri: str, *, tuner_fn: str = f"{MODULE}.tuner_fn",
                 runtime: dict | None = None) -> tuple[str, Path]:
    """CsvExampleGen -> Tuner -> Trainer on LocalDagRunner; returns (experiment, pipeline root)."""
    from tfx import v1 as tfx

    from examples.retrieval.pipeline import create_pipeline

    experiment = f"tuner-{uuid.uuid4().hex[:8]}"
    custom = {"epochs": 2, "trials": 2,
              "trainer_runtime": {"tracking_uri": uri, "experiment_name": experiment, **(runtime or {})}}
    root = tmp_path / "root"
    pipeline = create_pipeline(f"tune-{uuid.uuid4().hex[:6]}", str(root), str(data), run_fn=f"{MODULE}.run_fn",
                               tuner_fn=tuner_fn, custom_config=custom, train_steps=8, eval_steps=2,
                               metadata_path=str(tmp_path / "metadata.sqlite"))
    tfx.orchestration.LocalDagRunner().run(pipeline)
    return experiment, root


def runs_by_role(uri: str, experiment: str):
    """(client, the search's run, its trial runs by name, every other run)."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    parents = [r for r in runs if r.data.tags.get("trainer_runtime.role") == "tuner"]
    assert len(parents) == 1, [r.data.tags for r in runs]
    parent = parents[0]
    trials = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    others = [r for r in runs if r is not parent and r.info.run_name not in trials]
    return client, parent, trials, others


def tuner_status(root: Path) -> dict:
    found = sorted(root.glob("Tuner/best_hyperparameters/*-mlflow/mlflow_status.json"))
    assert len(found) == 1, found
    return json.loads(found[0].read_text())


def test_trials_are_nested_runs_and_the_trainer_is_linked(mlflow_server, interactions, tmp_path, tmp_env):
    """The whole story of issue 11 in one pipeline: the search and its trials, the Trainer linked to it,
    its registered model version, its datasets (the Tuner's best hyperparameters among them) and its
    system metrics."""
    model_name = f"tuned-{uuid.uuid4().hex[:6]}"
    experiment, root = run_pipeline(tmp_path, interactions, mlflow_server.url,
                                    runtime={"register_model_name": model_name, "system_metrics_interval": 1})
    client, parent, trials, others = runs_by_role(mlflow_server.url, experiment)

    assert sorted(trials) == ["trial-0", "trial-1"]
    scores = {}
    for name, trial in trials.items():
        assert trial.info.status == "FINISHED", name
        assert set(trial.data.params) >= {"hp.embedding_dim", "hp.learning_rate", "keras.epochs"}
        for metric in ("loss", "val_loss", "accuracy"):
            assert history_steps(client, trial.info.run_id, metric) == [0, 1], (name, metric)
        val_loss = [m.value for m in client.get_metric_history(trial.info.run_id, "val_loss")]
        assert trial.data.metrics["score"] == pytest.approx(min(val_loss))  # the oracle's objective, "min"
        scores[trial.data.tags["trainer_runtime.trial_id"]] = trial.data.metrics["score"]
    assert trials["trial-0"].data.params != trials["trial-1"].data.params, "two different points of the space"

    assert parent.info.status == "FINISHED" and parent.data.tags["tfx.component"] == "Tuner"
    best_id = min(scores, key=scores.get)
    best = trials[f"trial-{best_id}"]
    assert parent.data.params["best.trial_id"] == best_id
    assert parent.data.metrics["best.score"] == pytest.approx(scores[best_id])
    assert parent.data.tags["trainer_runtime.best_trial_run_id"] == best.info.run_id
    best_hp = {k[len("best."):]: v for k, v in parent.data.params.items() if k.startswith("best.hp.")}
    assert best_hp == {k: v for k, v in best.data.params.items() if k.startswith("hp.")}
    assert parent.data.metrics["trials.count"] == 2 and parent.data.metrics["trials.completed"] == 2
    assert history_steps(client, parent.info.run_id, "trial_score") == [0, 1]
    assert parent.data.params["tuner.objective"] == "val_loss" and parent.data.params["tuner.max_trials"] == "2"
    assert [a.path for a in client.list_artifacts(parent.info.run_id)] == ["best_hyperparameters.json"]

    status = tuner_status(root)
    assert status["stage"] == "completed" and status["run_id"] == parent.info.run_id
    assert status["trials"]["state"] == "ok" and status["trials"]["count"] == 2
    assert status["trials"]["runs"] == {tid: trials[f"trial-{tid}"].info.run_id for tid in ("0", "1")}
    assert status["best"]["trial_id"] == best_id

    assert len(others) == 1, [r.info.run_name for r in others]
    trainer = others[0]
    assert trainer.info.status == "FINISHED" and trainer.data.tags["tfx.component"] == "Trainer"
    assert trainer.data.tags["trainer_runtime.tuner_run_id"] == parent.info.run_id
    assert {k: v for k, v in trainer.data.params.items() if k.startswith("hp.")} == best_hp
    version = client.get_model_version(model_name, "1")
    assert version.run_id == trainer.info.run_id
    assert version.tags["trainer_runtime.serving_model_uri"] == trainer.data.tags["trainer_runtime.serving_model_uri"]
    assert {d.dataset.name for d in trainer.inputs.dataset_inputs} == {"examples", "hyperparameters"}
    # sampled every second: the search (two trials) runs long enough for several samples; this tiny
    # Trainer may end within one interval (test_lineage checks a Trainer's samples)
    assert len(client.get_metric_history(parent.info.run_id, "system/cpu_utilization_percentage")) >= 2
    # TFX's own output is untouched: one file in the dir (the Trainer refuses more), the run id on the artifact.
    outputs = [p for p in root.glob("Tuner/best_hyperparameters/*/*") if not p.parent.name.endswith("-mlflow")]
    assert [p.name for p in outputs] == ["best_hyperparameters.txt"]


def test_a_trial_whose_fit_raises_is_a_failed_run_and_the_search_goes_on(mlflow_server, interactions, tmp_path,
                                                                         tmp_env):
    """KerasTuner marks the trial failed and goes on (fewer than 3 failures in a row): the Tuner succeeds with
    the other trial's hyperparameters, as it would untracked."""
    experiment, root = run_pipeline(tmp_path, interactions, mlflow_server.url,
                                    tuner_fn=f"{MODULE}.tuner_fn_with_failing_trial")
    client, parent, trials, _ = runs_by_role(mlflow_server.url, experiment)
    assert {name: run.info.status for name, run in trials.items()} == {"trial-0": "FAILED", "trial-1": "FINISHED"}
    failed = trials["trial-0"]
    assert "ValueError: trial fit failed on purpose" in failed.data.tags["trainer_runtime.trial_error"]
    assert failed.data.tags["trainer_runtime.trial_status"] == "FAILED" and "score" not in failed.data.metrics
    assert "hp.embedding_dim" in failed.data.params
    assert parent.info.status == "FINISHED" and parent.data.params["best.trial_id"] == "1"
    assert parent.data.metrics["trials.failed"] == 1 and parent.data.metrics["trials.completed"] == 1
    status = tuner_status(root)
    assert status["stage"] == "completed" and status["trials"]["failed"] == 1
    written = json.loads(next(root.glob("Tuner/best_hyperparameters/*/best_hyperparameters.txt")).read_text())
    assert {f"best.hp.{k}": str(v) for k, v in written["values"].items()} == {
        k: v for k, v in parent.data.params.items() if k.startswith("best.hp.")}


def test_the_forwarder_swaps_the_stock_tuner_only():
    from trainer_runtime.tfx.vertex import STOCK_TUNER, TRACKED_TUNER, rewrite
    import trainer_runtime.tfx.tuner as module

    assert TRACKED_TUNER == f"{module.__name__}.{module.TrackedTunerExecutor.__name__}"
    for runner_args in (["--json_serialized_invocation_args", "{}"], ["--inputs", "{}", "--outputs", "{}"]):
        assert rewrite(["--executor_class_path", STOCK_TUNER, *runner_args]) == \
            ["--executor_class_path", TRACKED_TUNER, *runner_args]
    extension = "tfx.extensions.google_cloud_ai_platform.tuner.executor.Executor"
    assert rewrite(["--executor_class_path", extension]) == ["--executor_class_path", extension]


def test_default_commands_on_the_vertex_replay_track_the_tuner_and_link_the_trainer(mlflow_server, interactions,
                                                                                    tmp_path):
    """KubeflowV2DagRunner with default_commands compiles the stock Tuner and Trainer executors; the forwarder
    runs TrackedTunerExecutor and TrackedExecutor under kubeflow_v2_run_executor with the replayed
    ExecutorInput, and the run id reaches the Trainer through the artifact's metadata."""
    from tfx import v1 as tfx

    from examples.retrieval.pipeline import create_pipeline
    from tests.harness.vertex_local import LocalVertex, load_spec
    from tests.tfx.test_vertex_wirings import DEFAULT_COMMANDS, env

    experiment, job = f"tuner-{uuid.uuid4().hex[:8]}", f"tune{uuid.uuid4().hex[:6]}"
    custom = {"epochs": 1, "trials": 2, "trainer_runtime": {"tracking_uri": mlflow_server.url,
                                                            "experiment_name": experiment}}
    pipeline = create_pipeline(job, str(tmp_path / "root"), str(interactions), run_fn=f"{MODULE}.run_fn",
                               tuner_fn=f"{MODULE}.tuner_fn", custom_config=custom, train_steps=4, eval_steps=1,
                               tracked=False)
    tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image="img",
                                                                        default_commands=DEFAULT_COMMANDS),
        output_dir=str(tmp_path), output_filename="p.json").run(pipeline)
    spec = load_spec(tmp_path / "p.json")
    executors = json.dumps(spec["deploymentSpec"]["executors"])
    assert "tfx.components.tuner.executor.Executor" in executors and "TrackedTunerExecutor" not in executors
    vertex = LocalVertex(spec, tmp_path / "vertex-root", job_id=f"{job}-20261123120000")
    for task in ("CsvExampleGen", "Tuner", "Trainer"):
        done = vertex.run(task, env())
        assert done.returncode == 0, (task, done.stderr[-3000:])
        if task == "Tuner":
            assert "with executor trainer_runtime.tfx.tuner.TrackedTunerExecutor" in done.stderr
            best = done.outputs["best_hyperparameters"]["artifacts"][0]
    client, parent, trials, others = runs_by_role(mlflow_server.url, experiment)
    assert sorted(trials) == ["trial-0", "trial-1"] and parent.data.tags["vertex.task_name"] == "Tuner"
    assert all(t.info.status == "FINISHED" and "hp.embedding_dim" in t.data.params for t in trials.values())
    assert best["metadata"]["mlflow_run_id"] == parent.info.run_id
    assert Path(best["uri"] + "-mlflow", "mlflow_status.json").exists()
    assert [r.data.tags.get("trainer_runtime.tuner_run_id") for r in others] == [parent.info.run_id]


def test_sigterm_mid_trial_ends_the_trial_and_the_search_killed(mlflow_server, interactions, tmp_path):
    """Vertex preempts the Tuner task inside a trial (default_commands, kubeflow_v2_run_executor): the
    trial's nested run and the search's run both end KILLED (none left RUNNING), exit 143, the status
    says killed and lists the trial."""
    import signal
    import time

    from mlflow import MlflowClient
    from tfx import v1 as tfx

    from examples.retrieval.pipeline import create_pipeline
    from tests.harness.vertex_local import LocalVertex, load_spec
    from tests.tfx.test_vertex_wirings import DEFAULT_COMMANDS, env

    experiment, job = f"tuner-{uuid.uuid4().hex[:8]}", f"tune{uuid.uuid4().hex[:6]}"
    custom = {"epochs": 1, "trials": 2, "trainer_runtime": {"tracking_uri": mlflow_server.url,
                                                            "experiment_name": experiment}}
    pipeline = create_pipeline(job, str(tmp_path / "root"), str(interactions), run_fn=f"{MODULE}.run_fn",
                               tuner_fn=f"{MODULE}.tuner_fn_with_slow_trial", custom_config=custom,
                               train_steps=4, eval_steps=1, tracked=False)
    tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image="img",
                                                                        default_commands=DEFAULT_COMMANDS),
        output_dir=str(tmp_path), output_filename="p.json").run(pipeline)
    vertex = LocalVertex(load_spec(tmp_path / "p.json"), tmp_path / "vertex-root", job_id=f"{job}-20261123120000")
    assert vertex.run("CsvExampleGen", env()).returncode == 0
    proc, _ = vertex.start("Tuner", env())
    client = MlflowClient(mlflow_server.url)
    trial = None
    deadline = time.monotonic() + 240
    while trial is None and time.monotonic() < deadline and proc.poll() is None:
        experiment_found = client.get_experiment_by_name(experiment)
        if experiment_found:
            found = [r for r in client.search_runs([experiment_found.experiment_id])
                     if r.info.run_name == "trial-0"]
            trial = found[0] if found else None
        time.sleep(0.5)
    assert trial is not None and proc.poll() is None, proc.communicate()[1][-3000:] if proc.poll() is not None else ""
    time.sleep(2.0)  # inside the trial's first epoch (it sleeps for minutes)
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    exit_seconds = time.monotonic() - signalled
    assert proc.returncode == 143, stderr[-3000:]
    assert exit_seconds < 25, "inside Vertex's grace"
    _, parent, trials, _ = runs_by_role(mlflow_server.url, experiment)
    assert parent.info.status == "KILLED"
    assert {name: run.info.status for name, run in trials.items()} == {"trial-0": "KILLED"}
    assert trials["trial-0"].data.tags["trainer_runtime.trial_status"] == "KILLED"
    found = sorted((tmp_path / "vertex-root").rglob("*-mlflow/mlflow_status.json"))
    assert len(found) == 1, found
    status = json.loads(found[0].read_text())
    assert status["stage"] == "killed" and status["exit_code"] == 143
    assert status["trials"]["runs"] == {"0": trials["trial-0"].info.run_id}


def test_a_trial_spool_not_fully_sent_is_uploaded_beside_the_status_and_replays(mlflow_server, tmp_path, clean_env):
    """A trial whose close could not send everything: ``record_trials`` copies its spool (written by a
    real Spool: one point acknowledged, one point and the run's end not) beside the status under
    ``trial-<id>/``, and the replay command it writes lands the rest on the live server."""
    import io
    import time

    from mlflow import MlflowClient

    from trainer_runtime.core.config import load_config
    from trainer_runtime.commands.replay import replay
    from trainer_runtime.core.retry import Deadline
    from trainer_runtime.tracking.spool import SPOOL_FILE, Spool
    from trainer_runtime.tfx.tuner import record_trials
    from trainer_runtime.tracking.runs import TrackingContext
    from trainer_runtime.tfx.trials import TrialRuns

    client = MlflowClient(mlflow_server.url)
    experiment = f"trial-spool-{uuid.uuid4().hex[:8]}"
    experiment_id = client.create_experiment(experiment)
    search = client.create_run(experiment_id, run_name="search").info.run_id
    trial_run = client.create_run(experiment_id, run_name="trial-3", tags={"mlflow.parentRunId": search}).info.run_id
    now_ms = int(time.time() * 1000)
    client.log_metric(trial_run, "loss", 0.5, now_ms, step=0)  # the point the trial's logger did send
    spool = Spool(str(tmp_path / "spool" / "trial-3"),
                  {"run_id": trial_run, "experiment_id": experiment_id, "tracking_uri": mlflow_server.url})
    spool.append([{"k": "m", "key": "loss", "value": 0.5, "ts": now_ms, "step": 0},
                  {"k": "m", "key": "loss", "value": 0.25, "ts": now_ms, "step": 1},
                  {"k": "end", "status": "FINISHED", "end_time": now_ms}])
    spool.ack(1)
    spool.close()

    config = load_config({"MLFLOW_TRACKING_URI": mlflow_server.url,
                          "TRAINER_RUNTIME_SPOOL_DIR": str(tmp_path / "spool" / "search")})
    ctx = TrackingContext(client, config, experiment_id, experiment, search, "search", "test", "none")
    ctx.start_logger()  # what the session does before training
    trials = TrialRuns(ctx)
    trials.summary.count = trials.summary.completed = 1
    trials.summary.runs["3"] = trial_run
    trials.summary.unsent.append({"trial_id": "3", "run_id": trial_run, "pending": 2, "run_closed": False,
                                  "spool_dir": spool.directory})
    ctx.extra_status["trials"] = trials.summary.as_dict()
    status_dir = tmp_path / "status"
    record_trials(ctx, trials, str(status_dir))
    assert ctx.logger.close(Deadline(30)).pending == 0

    uploaded = status_dir / "trial-3"
    # what goes up is the spool's header and its unacknowledged part (the point the server has stays behind)
    local = (tmp_path / "spool" / "trial-3" / SPOOL_FILE).read_text().splitlines(keepends=True)
    assert (uploaded / "mlflow_spool.jsonl").read_text() == local[0] + "".join(local[2:])
    assert json.loads(local[1])["seq"] == 1 and [json.loads(line)["seq"] for line in local[2:]] == [2, 3]
    assert (uploaded / "mlflow_spool.acked").read_text().strip() == "1"
    unsent = ctx.extra_status["trials"]["unsent"][0]
    assert unsent["spool_uri"] == str(uploaded / "mlflow_spool.jsonl")
    assert unsent["replay_command"] == f"trainer-runtime replay {uploaded}"

    out = io.StringIO()
    assert replay(unsent["replay_command"].split(" ", 2)[2], {}, out) == 0, out.getvalue()
    assert "replayed 1 of 1 pending points" in out.getvalue()
    trial = client.get_run(trial_run)
    assert trial.info.status == "FINISHED"
    assert history_steps(client, trial_run, "loss") == [0, 1]
    assert client.get_run(search).data.metrics == {"trials.count": 1, "trials.completed": 1, "trials.failed": 0}
