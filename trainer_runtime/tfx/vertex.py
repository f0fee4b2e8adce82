"""``entrypoint.py`` as the pipeline's ``default_commands``: forward to TFX's Vertex executor runner.

KubeflowV2DagRunner starts every component as
``<command> --executor_class_path X --json_serialized_invocation_args {...}``.
We run TFX's own ``kubeflow_v2_run_executor`` module with the same arguments;
only the stock Trainer executor (GenericExecutor) is swapped for
TrackedExecutor. Every other component passes through untouched.
"""
from __future__ import annotations

import logging
import os
import runpy
import sys
from typing import Sequence


log = logging.getLogger(__name__)

RUNNER = "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"
STOCK_TRAINER = "tfx.components.trainer.executor.GenericExecutor"
LEGACY_TRAINER = "tfx.components.trainer.executor.Executor"
TRACKED = "trainer_runtime.tfx.executor.TrackedExecutor"


def _get(argv: list[str], flag: str) -> tuple[int, str] | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return i + 1, argv[i + 1]
        if arg.startswith(flag + "="):
            return i, arg.split("=", 1)[1]
    return None


def rewrite(argv: Sequence[str]) -> list[str]:
    """The same arguments, with the stock Trainer executor replaced by TrackedExecutor."""
    args = list(argv)
    found = _get(args, "--executor_class_path")
    if found and found[1] == STOCK_TRAINER:
        index, _ = found
        args[index] = TRACKED if args[index] == STOCK_TRAINER else f"--executor_class_path={TRACKED}"
    return args


def forward(argv: Sequence[str]) -> int:
    """Run TFX's executor runner in this process, as ``python -m`` would.

    A tracked Trainer that fails ends the process itself, with the exit code its outcome
    decided (``tracked.train_tracked``: the process's main module is TFX's runner), and a
    preemption exits ``128 + signum`` (``Killed``); both are ``SystemExit`` and pass through here.
    """
    from .. import logs

    args = rewrite(argv)
    executor = (_get(args, "--executor_class_path") or (0, "?"))[1]
    if executor == TRACKED:
        import absl.logging  # noqa: F401 - loaded now, so its handler gets our format before app.run installs it

        logs.setup(env=os.environ, root_level=logging.INFO)
    elif executor == LEGACY_TRAINER:
        log.warning("the Estimator-based Trainer executor (trainer_fn) is not tracked; use run_fn")
    log.info("forwarding to %s with executor %s", RUNNER, executor)
    sys.argv = [RUNNER, *args]
    runpy.run_module(RUNNER, run_name="__main__", alter_sys=True)
    return 0


def runs_in_vertex_runner() -> bool:
    """True when this process's main module is TFX's Vertex executor runner (``python -m`` on
    Vertex, or ``forward`` above): the process exists for this one component, so exiting it is ours to do."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) == RUNNER
