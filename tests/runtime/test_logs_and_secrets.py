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

import pytest

from trainer_runtime.core import logs
from trainer_runtime.core.redact import redact, register_secret, strip_credentials

REPO = Path(__file__).resolve().parents[2]
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.")


def _capture(fmt: str, env: dict, message: str, *args) -> str:
    stream = io.StringIO()
    handler = logs.setup(fmt, env, stream=stream)
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


#: A TFX-like process: absl's app.run() (which calls use_absl_handler()) runs main, which runs a
#: tracked run. "forwarder" sets logging up before app.run, as entrypoint.py's forwarder does;
#: "tfx" does not, as TFX's own kubeflow_v2_run_executor (the preferred wiring) does not; "plain" has
#: no absl app and nothing set up, as a user's script running LocalDagRunner.
ABSL_PROCESS = """
import logging, os, sys
from absl import app
from absl import logging as absl_logging

from trainer_runtime.core import logs
from trainer_runtime.core.config import load_config
from trainer_runtime.run.session import run_tracked


def main(argv):
    absl_logging.set_verbosity(absl_logging.INFO)  # as TFX's runner does
    absl_logging.info("absl line before the run")

    def train(ctx):
        logging.getLogger("apache_beam.typehints").info("beam chatter")
        logging.getLogger("apache_beam.io").warning("beam warning")
        absl_logging.info("absl line during the run")

    run_tracked(lambda: load_config(os.environ), train, status_dir=sys.argv[2])


if __name__ == "__main__":
    if sys.argv[1] == "forwarder":
        logs.setup(root_level=logging.INFO)
        logging.getLogger("apache_beam.typehints").info("beam chatter at import")
    if sys.argv[1] == "plain":
        main(None)
    else:
        app.run(main, argv=sys.argv[:1])
"""


def _absl_process(wiring: str, uri: str, tmp_path: Path, **env_vars: str) -> subprocess.CompletedProcess:
    script = tmp_path / "absl_process.py"
    script.write_text(ABSL_PROCESS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TRAINER_RUNTIME_", "CLOUD_ML_"))}
    env.update(PYTHONPATH=str(REPO), MLFLOW_TRACKING_URI=uri, MLFLOW_EXPERIMENT_NAME=f"logs-{uuid.uuid4().hex[:6]}",
               **env_vars)
    done = subprocess.run([sys.executable, str(script), wiring, str(tmp_path / "status")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.parametrize("wiring", ["forwarder", "tfx"])
def test_json_lines_survive_absls_handler_swap(wiring, mlflow_server, tmp_path):
    """absl's app.run() swaps the root handlers; from the run's start on, every line is ours, in JSON,
    once, with the run id; the run URL and status path are at INFO; Beam's INFO chatter is held back."""
    done = _absl_process(wiring, mlflow_server.url, tmp_path, CLOUD_ML_JOB_ID="123")
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if "status: " in line)
    entries = []
    for line in lines[start:]:
        assert line.startswith("{"), f"not a JSON line: {line!r}\n" + done.stderr[-3000:]
        entries.append(json.loads(line))
    messages = [e["message"] for e in entries]
    run_id = json.loads((tmp_path / "status" / "mlflow_info.json").read_text())["run_id"]
    url = next(e for e in entries if e["message"].startswith("MLflow run: "))
    assert url["severity"] == "INFO" and url["mlflow_run_id"] == run_id and run_id in url["message"]
    assert [m for m in messages if m.startswith("status: ")] == [f"status: {tmp_path / 'status' / 'mlflow_status.json'}"]
    assert messages.count("absl line during the run") == 1
    assert messages.count("beam warning") == 1
    assert "beam chatter" not in done.stderr
    assert len(set(messages)) == len(messages), "a line was written twice"
    if wiring == "forwarder":  # set up before app.run: absl's own handler kept our format
        assert any(json.loads(line)["message"] == "absl line before the run"
                   for line in lines[:start] if line.startswith("{"))


def test_text_locally_with_nothing_set_up(mlflow_server, tmp_path):
    """In a user's own process (LocalDagRunner) with no logging set up, the run's INFO lines still show."""
    done = _absl_process("plain", mlflow_server.url, tmp_path)
    lines = [line for line in done.stderr.splitlines() if " trainer_runtime." in line]
    assert len([line for line in lines if "INFO trainer_runtime.run.chief: MLflow run: http" in line]) == 1, done.stderr
    assert len([line for line in lines if "INFO trainer_runtime.run.chief: status: " in line]) == 1
    assert "beam chatter" not in done.stderr and "beam warning" in done.stderr
    assert not any(line.startswith("{") for line in done.stderr.splitlines())


def test_beam_info_when_asked(mlflow_server, tmp_path):
    done = _absl_process("plain", mlflow_server.url, tmp_path, TRAINER_RUNTIME_BEAM_LOG_LEVEL="info")
    assert done.stderr.count("INFO apache_beam.typehints: beam chatter") == 1, done.stderr[-3000:]


def test_setup_is_idempotent():
    root = logging.getLogger()
    try:
        for _ in range(3):
            handler = logs.setup("text", {})
        assert [h for h in root.handlers if isinstance(h, logs.RuntimeHandler)] == [handler]
    finally:
        root.removeHandler(handler)
