"""The pipeline: CsvExampleGen -> [Tuner ->] Trainer (tracked by trainer-runtime)."""
from __future__ import annotations

from typing import Any


def create_pipeline(pipeline_name: str, pipeline_root: str, data_root: str, *, run_fn: str | None = None,
                    module_file: str | None = None, custom_config: dict[str, Any] | None = None,
                    train_steps: int = 60, eval_steps: int = 5, metadata_path: str | None = None,
                    tracked: bool = True, tuner_fn: str | None = None,
                    tuner_config: dict[str, Any] | None = None):
    """Build the pipeline. ``tracked=True`` sets the Trainer's executor to TrackedExecutor (and the
    Tuner's to TrackedTunerExecutor). ``tuner_fn``: a Tuner before the Trainer, whose best
    hyperparameters the Trainer trains with; ``tuner_config`` its custom_config (default: the Trainer's)."""
    from tfx import v1 as tfx
    from tfx.dsl.components.base import executor_spec

    example_gen = tfx.components.CsvExampleGen(input_base=data_root)
    trainer_args: dict[str, Any] = dict(examples=example_gen.outputs["examples"],
                                        train_args=tfx.proto.TrainArgs(num_steps=train_steps),
                                        eval_args=tfx.proto.EvalArgs(num_steps=eval_steps),
                                        custom_config=custom_config or {})
    if run_fn:
        trainer_args["run_fn"] = run_fn
    else:
        trainer_args["module_file"] = module_file
    if tracked:
        from trainer_runtime.tfx.executor import TrackedExecutor

        trainer_args["custom_executor_spec"] = executor_spec.ExecutorClassSpec(TrackedExecutor)
    components = [example_gen]
    if tuner_fn:
        tuner = tfx.components.Tuner(examples=example_gen.outputs["examples"], tuner_fn=tuner_fn,
                                     train_args=tfx.proto.TrainArgs(num_steps=train_steps),
                                     eval_args=tfx.proto.EvalArgs(num_steps=eval_steps),
                                     custom_config=tuner_config if tuner_config is not None else custom_config or {})
        if tracked:
            from trainer_runtime.tfx.tuner import TrackedTunerExecutor

            tuner.executor_spec = executor_spec.ExecutorClassSpec(TrackedTunerExecutor)
        trainer_args["hyperparameters"] = tuner.outputs["best_hyperparameters"]
        components.append(tuner)
    trainer = tfx.components.Trainer(**trainer_args)
    metadata = (tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path)
                if metadata_path else None)
    return tfx.dsl.Pipeline(pipeline_name=pipeline_name, pipeline_root=pipeline_root,
                            components=[*components, trainer], metadata_connection_config=metadata)
