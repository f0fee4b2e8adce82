"""A failing Trainer on LocalDagRunner, in a real process as a user's script runs it: what the person
at the terminal sees is their own exception, and the run's URL and status path."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.tfx.conftest import status_dir

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
from pathlib import Path

from tests.tfx.conftest import run_local

run_local(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], experiment=sys.argv[4],
          run_fn="examples.retrieval.model.run_fn_that_raises")
"""


def test_users_exception_is_printed_as_theirs(mlflow_server, interactions, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TRAINER_RUNTIME_", "CLOUD_ML_"))}
    env.update(PYTHONPATH=str(REPO), TF_USE_LEGACY_KERAS="1")
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), str(interactions), mlflow_server.url,
                           f"local-{uuid.uuid4().hex[:6]}"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr[-3000:]
    tail = done.stderr[done.stderr.rindex("Traceback (most recent call last)"):]
    assert "During handling of the above exception" not in done.stderr, tail
    assert tail.rstrip().endswith("ValueError: user code failed on purpose"), tail
    assert 'raise ValueError("user code failed on purpose")' in tail, "the user's own frame"
    assert "trainer_runtime.core.errors.UserCodeError:" not in tail, "no runtime exception printed with it"
    status = json.loads((status_dir(tmp_path / "root") / "mlflow_status.json").read_text())
    assert status["exit_code"] == 4 and status["error"]["type"] == "UserCodeError"
    # Nothing set logging up in this process: the runtime did, so the run's URL and status path show.
    assert done.stderr.count("INFO trainer_runtime.run.session: MLflow run: http") == 1, done.stderr[-3000:]
    assert done.stderr.count("INFO trainer_runtime.run.session: status: ") == 1
