"""Logs: JSON lines for Cloud Logging, text locally, and no secret anywhere."""
from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

from trainer_runtime import logs
from trainer_runtime.redact import redact, register_secret, strip_credentials

REPO = Path(__file__).resolve().parents[2]
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.")


def _capture(fmt: str, env: dict, message: str, *args) -> str:
    stream = io.StringIO()
    handler = logs.configure(fmt, env, stream=stream)
    try:
        logging.getLogger("x").warning(message, *args)
    finally:
        logging.getLogger().removeHandler(handler)
    return stream.getvalue()


def test_json_on_gcp_with_severity_and_message():
    line = _capture("auto", {"CLOUD_ML_JOB_ID": "123"}, "hello %s", "world")
    entry = json.loads(line)
    assert entry["severity"] == "WARNING" and entry["message"] == "hello world"


def test_text_locally():
    line = _capture("auto", {}, "hello")
    assert "WARNING x: hello" in line
    assert not line.startswith("{")


def test_redaction_in_log_lines():
    register_secret("sup3r-secret-token")
    out = _capture("json", {}, "headers %s uri %s tok %s",
                   {"Authorization": "Bearer abc.def.ghi"}, "https://bob:pw123@host/x", "sup3r-secret-token")
    assert "abc.def.ghi" not in out and "pw123" not in out and "sup3r-secret-token" not in out


def test_redact_patterns():
    assert "eyJ" not in redact("token eyJhbGciOi.eyJzdWIiOiIx.sig")
    assert redact("url?access_token=abc&x=1") == "url?access_token=***&x=1"
    assert strip_credentials("https://u:p@host:8443/p?token=x#f") == "https://host:8443/p"


def test_secrets_grep_over_logs_and_status_files(mlflow_server, metadata, auth_proxy, tmp_path):
    """A whole standalone run through the auth proxy with a Google ID token, plus a failing run
    with MLflow's token set: neither logs nor status files nor MLflow params/tags hold a secret."""
    user = tmp_path / "user_mod.py"
    user.write_text("import os\n"
                    "def main():\n    print('training')\n"
                    "def fail():\n    raise RuntimeError('failed with ' + os.environ['MLFLOW_TRACKING_TOKEN'])\n")
    base = dict(os.environ, PYTHONPATH=str(tmp_path), TRAINER_RUNTIME_LOG_FORMAT="json")
    exp = f"secrets-{uuid.uuid4().hex[:6]}"
    google = dict(base, MLFLOW_TRACKING_URI=auth_proxy.url, TRAINER_RUNTIME_AUTH="google",
                  MLFLOW_EXPERIMENT_NAME=exp, TRAINER_RUNTIME_STATUS_DIR=str(tmp_path / "g"))
    token_secret = "mlflow-static-token-XYZ987"
    mlflow_tok = dict(base, MLFLOW_TRACKING_URI=mlflow_server.url, MLFLOW_TRACKING_TOKEN=token_secret,
                      MLFLOW_EXPERIMENT_NAME=exp, TRAINER_RUNTIME_STATUS_DIR=str(tmp_path / "m"))
    runs = [subprocess.run([sys.executable, str(REPO / "entrypoint.py"), "run", target], env=env,
                           capture_output=True, text=True, timeout=120)
            for target, env in (("user_mod:main", google), ("user_mod:fail", mlflow_tok))]
    assert runs[0].returncode == 0, runs[0].stderr[-2000:]
    assert runs[1].returncode == 4, runs[1].stderr[-2000:]
    assert metadata.control.stats()["tokens_issued"] >= 1
    text = "".join(r.stdout + r.stderr for r in runs)
    text += "".join(p.read_text() for p in tmp_path.rglob("*.json"))
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server.url)
    for run in client.search_runs([client.get_experiment_by_name(exp).experiment_id]):
        text += json.dumps(run.data.params) + json.dumps(run.data.tags)
    assert "failed with ***" in text, "the user's error still reaches the status, masked"
    assert token_secret not in text
    assert not JWT.search(text)


def test_handlers_installed_by_others_are_protected_too():
    """Under TFX, absl owns the root handler; run_tracked adds the redacting filter to it."""
    stream = io.StringIO()
    foreign = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(foreign)
    try:
        logs.protect_existing_handlers()
        logs.protect_existing_handlers()  # idempotent
        assert sum(isinstance(f, logs.RedactingFilter) for f in foreign.filters) == 1
        logging.getLogger("y").error("sending Authorization: Bearer abc.def.ghi")
    finally:
        root.removeHandler(foreign)
    assert "abc.def.ghi" not in stream.getvalue() and "Bearer ***" in stream.getvalue()
