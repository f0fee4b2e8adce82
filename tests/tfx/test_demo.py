"""`make demo`'s program, run as a process the way the README runs it (embedded MLflow server)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_end_to_end_with_an_embedded_server(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TRAINER_RUNTIME_"))}
    env["DEMO_OUTPUT_DIR"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-m", "examples.demo"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for stage in range(1, 6):
        assert f"[{stage}/5]" in out.stdout
    assert "stage       : completed" in out.stdout
    assert "model       : trainer-runtime-demo version 1 (registered; source runs:/" in out.stdout
    assert "ms per epoch on the training thread (3 epochs" in out.stdout
    table = out.stdout.split("metrics per epoch (from the MLflow server):")[1].splitlines()
    assert table[1].split()[0] == "epoch" and [row.split()[0] for row in table[2:5]] == ["0", "1", "2"]
    trials = out.stdout.split("Tuner trials (nested runs of the search's run, from the MLflow server):")[1].splitlines()
    assert "2 trials, best trial" in trials[1]
    assert [row.split()[:2] for row in trials[3:5]] == [["trial-0", "FINISHED"], ["trial-1", "FINISHED"]]
    search_run = trials[1].split("(")[1].split(")")[0]
    assert f"Trainer run tagged with the search's run: {search_run}" in out.stdout
    assert "mlflow ui --backend-store-uri sqlite:///" in out.stdout
    assert (tmp_path / "mlflow" / "mlflow.db").exists()
