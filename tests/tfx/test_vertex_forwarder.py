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
