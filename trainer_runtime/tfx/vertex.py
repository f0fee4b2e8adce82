"""``entrypoint.py`` as the pipeline's ``default_commands``: forward to TFX's Vertex executor runner.

KubeflowV2DagRunner starts every component as
``<command> --executor_class_path X --json_serialized_invocation_args {...}``.
We run TFX's own ``kubeflow_v2_run_executor`` module with the same arguments;
only the stock Trainer executor (GenericExecutor) is swapped for
TrackedExecutor, and the Vertex AI Training extension's launcher for the tracked
one (``vertex_training``), which runs TrackedExecutor on the job's replicas, and
the stock Tuner executor for TrackedTunerExecutor (``tuner``). Every other
component passes through untouched (the Vertex AI extension's Tuner too: its
parallel search is not tracked).

``tfx.scripts.run_executor`` invocations (``--executor_class_path X --inputs …
--outputs … --exec-properties …``, how the extension's replicas run) go to that
module instead, with only the stock Trainer and Tuner executors swapped.
"""
from __future__ import annotations

import logging
import os
import runpy
import sys
from typing import Sequence


log = logging.getLogger(__name__)

RUNNER = "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"
RUN_EXECUTOR = "tfx.scripts.run_executor"
#: arguments only tfx.scripts.run_executor takes
RUN_EXECUTOR_FLAGS = ("--inputs", "--inputs-base64", "--outputs", "--outputs-base64", "--exec-properties",
                      "--exec-properties-base64")
STOCK_TRAINER = "tfx.components.trainer.executor.GenericExecutor"
LEGACY_TRAINER = "tfx.components.trainer.executor.Executor"
TRACKED = "trainer_runtime.tfx.executor.TrackedExecutor"
STOCK_TUNER = "tfx.components.tuner.executor.Executor"
TRACKED_TUNER = "trainer_runtime.tfx.tuner.TrackedTunerExecutor"
#: the Vertex AI Training extension's Trainer executors (they launch the CustomJob), and the tracked one
STOCK_LAUNCHERS = ("tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor",
                   "tfx.extensions.google_cloud_ai_platform.trainer.executor.Executor")
TRACKED_LAUNCHER = "trainer_runtime.tfx.vertex_training.TrackedVertexTrainingExecutor"


def _get(argv: list[str], flag: str) -> tuple[int, str] | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return i + 1, argv[i + 1]
        if arg.startswith(flag + "="):
            return i, arg.split("=", 1)[1]
    return None


def runner_for(argv: Sequence[str]) -> str:
    """The TFX module these arguments are for: ``run_executor`` (Vertex AI Training replicas), else
    ``kubeflow_v2_run_executor`` (Vertex pipeline tasks)."""
    return RUN_EXECUTOR if any(arg.split("=", 1)[0] in RUN_EXECUTOR_FLAGS for arg in argv) else RUNNER


def rewrite(argv: Sequence[str]) -> list[str]:
    """The same arguments, with the stock Trainer executor replaced by TrackedExecutor, the stock
    Tuner executor by TrackedTunerExecutor and (for a pipeline task) the Vertex AI Training
    extension's launcher by the tracked one."""
    args = list(argv)
    swaps = {STOCK_TRAINER: TRACKED, STOCK_TUNER: TRACKED_TUNER}
    if runner_for(args) == RUNNER:
        swaps.update(dict.fromkeys(STOCK_LAUNCHERS, TRACKED_LAUNCHER))
    found = _get(args, "--executor_class_path")
    if found and found[1] in swaps:
        index, stock = found
        ours = swaps[stock]
        args[index] = ours if args[index] == stock else f"--executor_class_path={ours}"
    return args


def forward(argv: Sequence[str]) -> int:
    """Run TFX's executor runner in this process, as ``python -m`` would.

    A tracked Trainer that fails ends the process itself, with the exit code its outcome
    decided (``tracked.train_tracked``: the process's main module is TFX's runner), and a
    preemption exits ``128 + signum`` (``Killed``); both are ``SystemExit`` and pass through here.
    """
    from trainer_runtime.core import logs

    runner = runner_for(argv)
    args = rewrite(argv)
    executor = (_get(args, "--executor_class_path") or (0, "?"))[1]
    if executor in (TRACKED, TRACKED_LAUNCHER, TRACKED_TUNER):
        import absl.logging  # noqa: F401 - loaded now, so its handler gets our format before app.run installs it

        logs.setup(env=os.environ, root_level=logging.INFO)
    elif executor == LEGACY_TRAINER:
        log.warning("the Estimator-based Trainer executor (trainer_fn) is not tracked; use run_fn")
    log.info("forwarding to %s with executor %s", runner, executor)
    sys.argv = [runner, *args]
    runpy.run_module(runner, run_name="__main__", alter_sys=True)
    return 0


def runs_in_vertex_runner() -> bool:
    """True when this process's main module is TFX's Vertex executor runner (``python -m`` on
    Vertex, or ``forward`` above): the process exists for this one component, so exiting it is ours to do."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) == RUNNER
