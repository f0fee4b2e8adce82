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
    # JSON lines, so the log reads back as records (logger, severity, message); the local text layout
    # is tests/runtime/test_logs_and_secrets.py's
    env.update(PYTHONPATH=str(REPO), TF_USE_LEGACY_KERAS="1", TRAINER_RUNTIME_LOG_FORMAT="json")
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), str(interactions), mlflow_server.url,
                           f"local-{uuid.uuid4().hex[:6]}"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr[-3000:]
    tail = done.stderr[done.stderr.rindex("Traceback (most recent call last)"):]
    assert "During handling of the above exception" not in done.stderr, tail
    assert tail.rstrip().endswith("ValueError: user code failed on purpose"), tail
    assert 'raise ValueError("user code failed on purpose")' in tail, "the user's own frame"
    assert "trainer_runtime.core.errors.UserCodeError:" not in tail, "no runtime exception printed with it"
    status_path = status_dir(tmp_path / "root") / "mlflow_status.json"
    status = json.loads(status_path.read_text())
    assert status["exit_code"] == 4 and status["error"]["type"] == "UserCodeError"
    # Nothing set logging up in this process: the runtime did, so the run's URL and status path show,
    # once each, as the runtime's own INFO records.
    ours = [(r["severity"], r["message"]) for r in log_records(done.stderr)
            if r["logger"].startswith("trainer_runtime.")]
    assert ours.count(("INFO", f"MLflow run: {status['run_url']}")) == 1, ours
    assert ours.count(("INFO", f"status: {status_path}")) == 1, ours


def log_records(stderr: str) -> list[dict]:
    """The JSON log lines of ``stderr`` as records; other lines (a traceback, TF's own) are not records."""
    records = []
    for line in stderr.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and {"logger", "severity", "message"} <= entry.keys():
            records.append(entry)
    return records
