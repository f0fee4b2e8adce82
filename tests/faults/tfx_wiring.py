"""Launch the fault scenarios' trainer on a TFX wiring, as its own process (the runner signals it).

    python -m tests.faults.tfx_wiring {executor|shim|forwarder} WORKDIR DATA_DIR

``executor``: LocalDagRunner, Trainer with ``custom_executor_spec=TrackedExecutor``.
``shim``: LocalDagRunner, stock Trainer executor, ``run_fn=trainer_runtime.tfx.run_fn.run_fn``.
``forwarder``: the pipeline compiled by KubeflowV2DagRunner with ``default_commands`` =
the image's entrypoint, replayed task by task as Vertex runs it; after CsvExampleGen
this process *becomes* the Trainer task (exec), so its pid is the task's.
The tracking URI, experiment and status dir come from the environment.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

#: the user-code rows run their custom loop instead (FAULT_RUN_FN)
RUN_FN = os.environ.get("FAULT_RUN_FN", "tests.faults.trainer.run_fn")


def _pipeline(wiring: str, workdir: Path, data: str):
    from examples.retrieval.pipeline import create_pipeline

    custom = {"trainer_runtime": {"run_fn": RUN_FN}} if wiring == "shim" else {}
    return create_pipeline(f"faults-{wiring}", str(workdir / "root"), data, custom_config=custom,
                           run_fn="trainer_runtime.tfx.run_fn.run_fn" if wiring == "shim" else RUN_FN,
                           metadata_path=str(workdir / "metadata.sqlite"), tracked=wiring == "executor")


def main(wiring: str, workdir: str, data: str) -> int:
    from tfx import v1 as tfx

    work = Path(workdir)
    if wiring in ("executor", "shim"):
        tfx.orchestration.LocalDagRunner().run(_pipeline(wiring, work, data))
        return 0
    from tests.harness.vertex_local import LocalVertex, load_spec

    pipeline = _pipeline("forwarder", work, data)
    tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image="img", default_commands=["python", "/opt/trainer-runtime/entrypoint.py"]),
        output_dir=str(work), output_filename="p.json").run(pipeline)
    vertex = LocalVertex(load_spec(work / "p.json"), work / "vertex-root")
    example_gen = vertex.run("CsvExampleGen", dict(os.environ))
    if example_gen.returncode:
        sys.stderr.write(example_gen.stderr[-3000:])
        return 90
    _, _, _, cmd = vertex._commands("Trainer")
    os.execv(cmd[0], cmd)
    return 91  # not reached


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
