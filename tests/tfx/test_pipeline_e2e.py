"""Real TFX: LocalDagRunner runs CsvExampleGen -> Trainer (TFRS retrieval) through the runtime,
and the live MLflow server is checked for one run with every epoch's metrics, params and tags."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.tfx.conftest import history_steps, mlflow_run, only_dir, run_local, status_dir

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
TOP_100 = "val_factorized_top_k/top_100_categorical_accuracy"


def _assert_tracked_run(uri, experiment, root, epochs=3):
    client, run = mlflow_run(uri, experiment)
    assert run.info.status == "FINISHED"
    for name in ("loss", "val_loss", "total_loss", TOP_100):
        assert history_steps(client, run.info.run_id, name) == list(range(epochs)), name
    params = run.data.params
    assert params["tfx.train_steps"] == "60" and params["tfx.eval_steps"] == "5"
    assert params["custom_config.epochs"] == str(epochs)
    assert params["keras.epochs"] == str(epochs) and params["keras.optimizer"] == "Adagrad"
    assert "custom_config.api_token" not in params, "secret-looking keys are not logged"
    assert not any(k.startswith("custom_config.trainer_runtime") for k in params)
    tags = run.data.tags
    assert tags["trainer_runtime.path"] == "tfx"
    from trainer_runtime import __version__

    assert tags["trainer_runtime.version"] == __version__
    assert tags["tfx.component"] == "Trainer"
    status = json.loads((status_dir(root) / "mlflow_status.json").read_text())
    info = json.loads((status_dir(root) / "mlflow_info.json").read_text())
    assert status["stage"] == "completed" and status["run_id"] == run.info.run_id == info["run_id"]
    assert status["logging"]["pending"] == 0 and status["logging"]["rejected"] == {}
    assert TOP_100 in status["final_metrics"]
    assert status["callback"]["epochs"] == epochs and status["callback"]["ms_per_epoch"] < 1000
    assert (only_dir(root, "model") / "Format-Serving" / "saved_model.pb").exists()
    return client, run


def test_run_fn_path(mlflow_server, interactions, tmp_path, tmp_env):
    experiment, root = run_local(tmp_path, interactions, mlflow_server.url,
                                 run_fn="examples.retrieval.model.run_fn")
    client, run = _assert_tracked_run(mlflow_server.url, experiment, root)
    assert run.data.tags["tfx.pipeline"].startswith("pipe-")


def test_module_file_path_through_the_wheel_tfx_builds(mlflow_server, interactions, tmp_path, tmp_env):
    experiment, root = run_local(tmp_path, interactions, mlflow_server.url,
                                 module_file=str(REPO / "examples" / "retrieval" / "model.py"))
    _assert_tracked_run(mlflow_server.url, experiment, root)
    assert list(root.glob("_wheels/*.whl")), "TFX packaged module_file as a wheel (module_path)"


def test_run_fn_shim_with_the_stock_executor(mlflow_server, interactions, tmp_path, tmp_env):
    """The shim sees only FnArgs; it finds the stock executor's context and gets what TrackedExecutor gets:
    the tfx.* tags, the pipeline's name as the experiment, a <pipeline>-<component>-<time> run name."""
    import re

    pipeline = f"shim-{uuid.uuid4().hex[:6]}"
    _, root = run_local(tmp_path, interactions, mlflow_server.url, tracked=False, pipeline_name=pipeline,
                        run_fn="trainer_runtime.tfx.run_fn.run_fn",
                        runtime={"run_fn": "examples.retrieval.model.run_fn", "experiment_name": None})
    _, run = _assert_tracked_run(mlflow_server.url, pipeline, root)
    assert run.data.tags["tfx.pipeline"] == pipeline and run.data.tags["tfx.pipeline_run_id"]
    assert re.fullmatch(rf"{pipeline}-Trainer-\d{{8}}T\d{{6}}Z", run.info.run_name), run.info.run_name


def test_user_exception_propagates_and_the_run_is_failed(mlflow_server, interactions, tmp_path, tmp_env):
    with pytest.raises(ValueError, match="user code failed on purpose"):
        run_local(tmp_path, interactions, mlflow_server.url, experiment="e2e-raises-" + tmp_path.name[-6:],
                  run_fn="examples.retrieval.model.run_fn_that_raises")
    client, run = mlflow_run(mlflow_server.url, "e2e-raises-" + tmp_path.name[-6:])
    assert run.info.status == "FAILED"
    assert run.data.metrics == {}
    status = json.loads((status_dir(tmp_path / "root") / "mlflow_status.json").read_text())
    assert status["stage"] == "failed" and status["error"]["type"] == "UserCodeError"
    assert "user code failed on purpose" in status["error"]["message"]


def test_no_model_written_surfaces_tfx_own_error(mlflow_server, interactions, tmp_path, tmp_env):
    with pytest.raises(RuntimeError, match="run_fn failed to generate model"):
        run_local(tmp_path, interactions, mlflow_server.url, run_fn="examples.retrieval.model.run_fn_without_model")
    status = json.loads((status_dir(tmp_path / "root") / "mlflow_status.json").read_text())
    assert status["stage"] == "failed" and "serving_model_dir" in status["error"]["hint"]


def test_bad_module_path_says_what_is_there(mlflow_server, interactions, tmp_path, tmp_env):
    from trainer_runtime.core.errors import UserCodeLoadError

    with pytest.raises(UserCodeLoadError, match="has no 'run_fn_typo'; found: build_model, run_fn"):
        run_local(tmp_path, interactions, mlflow_server.url, run_fn="examples.retrieval.model.run_fn_typo")
    status = json.loads((status_dir(tmp_path / "root") / "mlflow_status.json").read_text())
    assert status["error"]["type"] == "UserCodeLoadError" and status["exit_code"] == 3


def test_server_unreachable_no_training_step(interactions, tmp_path, tmp_env, capfd):
    from tests.harness.procs import free_port
    from trainer_runtime.core.errors import TrackingUnavailableError

    with pytest.raises(TrackingUnavailableError):
        run_local(tmp_path, interactions, f"http://127.0.0.1:{free_port()}",
                  runtime={"preflight_timeout": 2}, run_fn="examples.retrieval.model.run_fn")
    status = json.loads((status_dir(tmp_path / "root") / "mlflow_status.json").read_text())
    assert status["stage"] == "failed" and status["error"]["type"] == "TrackingUnavailableError"
    assert list(status["timestamps"]) == ["initializing", "failed"]
    assert "Epoch 1/" not in capfd.readouterr().out
    assert not list((tmp_path / "root").glob("Trainer/model/*/Format-Serving"))
