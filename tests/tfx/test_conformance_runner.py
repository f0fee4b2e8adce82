"""The conformance runner (tests/tfx/tfx_conformance.py) can fail: the container suite runs it in every
product image and passes on its exit code and its counts, so here, on the host's TFX, TrackedExecutor is
broken on purpose and the runner must say so: exit 1, every test that constructed it an error or failure,
each problem naming the cause."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

BROKEN = """
import runpy

from trainer_runtime.tfx.executor import TrackedExecutor


def broken(self, *args, **kwargs):
    raise RuntimeError("TrackedExecutor broken on purpose")


TrackedExecutor.Do = broken
runpy.run_module("tests.tfx.tfx_conformance", run_name="__main__")
"""


@pytest.mark.slow
def test_the_runner_fails_when_tracked_executor_breaks_tfxs_own_tests(tmp_path, mlflow_server):
    script = tmp_path / "broken_conformance.py"
    script.write_text(BROKEN)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TRAINER_RUNTIME_"))}
    env.update(PYTHONPATH=str(REPO), TEST_TMPDIR=str(tmp_path), TF_CPP_MIN_LOG_LEVEL="3",
               MLFLOW_TRACKING_URI=mlflow_server.url, MLFLOW_EXPERIMENT_NAME="conformance-broken")
    out = subprocess.run([sys.executable, str(script)], cwd=str(tmp_path), env=env, capture_output=True,
                         text=True, timeout=600)
    lines = [line for line in out.stdout.splitlines() if line.startswith("CONFORMANCE ")]
    assert lines, out.stdout[-2000:] + out.stderr[-4000:]
    result = json.loads(lines[-1][len("CONFORMANCE "):])
    assert out.returncode == 1, result
    assert result["executors"] == ["trainer_runtime.tfx.executor.TrackedExecutor"], result
    broken = result["failures"] + result["errors"]
    assert broken == result["ran"] - result["skipped"] == result["constructed"] >= 3, result
    assert all(p.endswith("RuntimeError: TrackedExecutor broken on purpose") for p in result["problems"]), result
