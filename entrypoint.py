#!/usr/bin/env python
"""Image entrypoint and Vertex `default_commands` target.

- With ``--executor_class_path`` (how TFX's KubeflowV2DagRunner calls every
  component): forward to TFX's kubeflow_v2_run_executor, swapping in the
  tracked Trainer executor (the tracked Vertex AI Training launcher, the
  tracked Tuner executor) and
  leaving every other component untouched; with ``tfx.scripts.run_executor``'s
  arguments (``--inputs`` …), forward there, swapping only the Trainer and Tuner executors.
- Otherwise: the `trainer-runtime` CLI (``run pkg.mod:fn``, ``doctor``, ``--version``).
"""
import sys


def main(argv):
    if any(arg.startswith("--executor_class_path") for arg in argv):
        from trainer_runtime.tfx.vertex import forward

        return forward(argv)
    from trainer_runtime.commands.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
