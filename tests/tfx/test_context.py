"""What the runtime learns from a Trainer's FnArgs and executor context (real TFX objects)."""
from __future__ import annotations

from trainer_runtime.tfx import context


def test_params_from_real_fn_args():
    from tfx.components.trainer.fn_args_utils import FnArgs

    fn_args = FnArgs(train_steps=100, eval_steps=10,
                     custom_config={"epochs": 3, "layers": [64, 32], "db_password": "x",
                                    "trainer_runtime": {"tracking_uri": "https://m"}},
                     hyperparameters={"space": [], "values": {"learning_rate": 0.01, "units": 16}})
    assert context.params_for(fn_args) == {
        "tfx.train_steps": 100, "tfx.eval_steps": 10, "hp.learning_rate": 0.01, "hp.units": 16,
        "custom_config.epochs": 3, "custom_config.layers": "[64, 32]"}


def test_vertex_ids_from_the_kubeflow_v2_executor_context():
    from tfx.dsl.components.base.base_executor import BaseExecutor

    ctx = BaseExecutor.Context(tmp_dir="gs://b/root/123/recommender-20261123/Trainer_abc123/.temp",
                               unique_id="Trainer_abc123")
    assert context.vertex_ids(ctx) == {"vertex.pipeline_job_id": "recommender-20261123",
                                       "vertex.task_name": "Trainer", "vertex.task_id": "abc123"}
    assert context.pipeline_name(ctx) == "recommender"


def test_status_dir_is_next_to_model_run():
    assert context.status_dir_for("gs://b/x/Trainer_1/model_run") == "gs://b/x/Trainer_1/model_run-mlflow"
    assert context.status_dir_for("/p/Trainer/model_run/7/") == "/p/Trainer/model_run/7-mlflow"
