"""The default_commands forwarder rewrites only the stock Trainer executor (both flag forms)."""
from trainer_runtime.tfx.vertex import STOCK_TRAINER, TRACKED, rewrite

OTHER = "tfx.components.example_gen.csv_example_gen.executor.Executor"


def test_trainer_is_swapped_in_both_flag_forms():
    assert rewrite(["--executor_class_path", STOCK_TRAINER, "--json_serialized_invocation_args", "{}"]) == \
        ["--executor_class_path", TRACKED, "--json_serialized_invocation_args", "{}"]
    assert rewrite([f"--executor_class_path={STOCK_TRAINER}", "--x"]) == [f"--executor_class_path={TRACKED}", "--x"]


def test_every_other_executor_passes_through_unchanged():
    args = ["--executor_class_path", OTHER, "--json_serialized_invocation_args", STOCK_TRAINER, "--runner=X"]
    assert rewrite(args) == args
    assert rewrite(["--executor_class_path", TRACKED]) == ["--executor_class_path", TRACKED]


LAUNCHER = "tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor"
RUN_EXECUTOR_ARGS = ["--inputs", "{}", "--outputs", "{}", "--exec-properties", "{}"]


def test_the_vertex_training_launcher_is_swapped_for_the_tracked_one():
    from trainer_runtime.tfx.vertex import TRACKED_LAUNCHER

    args = ["--executor_class_path", LAUNCHER, "--json_serialized_invocation_args", "{}"]
    assert rewrite(args) == ["--executor_class_path", TRACKED_LAUNCHER, "--json_serialized_invocation_args", "{}"]
    assert rewrite([f"--executor_class_path={LAUNCHER}"]) == [f"--executor_class_path={TRACKED_LAUNCHER}"]
    import trainer_runtime.tfx.vertex_training as module

    assert TRACKED_LAUNCHER == f"{module.__name__}.{module.TrackedVertexTrainingExecutor.__name__}"


def test_run_executor_invocations_go_to_run_executor_with_only_the_trainer_swapped():
    from trainer_runtime.tfx.vertex import RUN_EXECUTOR, RUNNER, runner_for

    assert runner_for(["--executor_class_path", STOCK_TRAINER, *RUN_EXECUTOR_ARGS]) == RUN_EXECUTOR
    assert runner_for(["--executor_class_path", STOCK_TRAINER, "--inputs-base64=e30="]) == RUN_EXECUTOR
    assert runner_for(["--executor_class_path", STOCK_TRAINER, "--json_serialized_invocation_args", "{}"]) == RUNNER
    assert rewrite(["--executor_class_path", STOCK_TRAINER, *RUN_EXECUTOR_ARGS]) == \
        ["--executor_class_path", TRACKED, *RUN_EXECUTOR_ARGS]
    for other in (LAUNCHER, OTHER):
        assert rewrite(["--executor_class_path", other, *RUN_EXECUTOR_ARGS]) == \
            ["--executor_class_path", other, *RUN_EXECUTOR_ARGS]
