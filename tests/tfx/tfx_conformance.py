"""TFX's own Trainer executor tests, with TrackedExecutor in place of GenericExecutor.

The tests ship in the tfx wheel (``tfx/components/trainer/executor_test.py`` and its testdata), so the
same runner works on the host and inside each product image, against the TFX that base carries:

    python -m tests.tfx.tfx_conformance      (MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_NAME set)

It prints one JSON line, ``CONFORMANCE {...}``: tests run, failures, errors, skipped, the executor
class the tests constructed, and the TFX version. The caller checks the tracked runs on the server.
"""
from __future__ import annotations

import json
import sys
import unittest


def run() -> dict:
    from absl import flags
    import tfx
    from tfx.components.trainer import executor, executor_test

    from trainer_runtime.tfx.executor import TrackedExecutor

    flags.FLAGS.mark_as_parsed()  # tf.test.TestCase reads absl flags (its temp dir)
    built = []

    class Counted(TrackedExecutor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(type(self).__mro__[1].__module__ + "." + type(self).__mro__[1].__name__)

    executor.GenericExecutor = Counted  # what executor_test's setUp constructs
    suite = unittest.defaultTestLoader.loadTestsFromModule(executor_test)
    result = unittest.TextTestRunner(stream=sys.stderr, verbosity=2).run(suite)
    return {"tfx": tfx.__version__, "ran": result.testsRun, "failures": len(result.failures),
            "errors": len(result.errors), "skipped": len(result.skipped), "executors": sorted(set(built)),
            "constructed": len(built),
            "problems": [f"{test.id()}: {trace.strip().splitlines()[-1]}"
                         for test, trace in result.failures + result.errors]}


if __name__ == "__main__":
    outcome = run()
    print("CONFORMANCE " + json.dumps(outcome), flush=True)
    sys.exit(0 if outcome["ran"] and not outcome["failures"] and not outcome["errors"] else 1)
