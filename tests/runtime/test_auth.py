"""The Google ID-token header provider, against the local metadata server google-auth really calls."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from trainer_runtime.tracking import auth
from trainer_runtime.core.config import load_config
from trainer_runtime.core.errors import TrackingAuthError


def test_provider_is_registered_through_mlflows_entry_point():
    from mlflow.tracking.request_header.registry import _request_header_provider_registry

    kinds = [type(p) for p in _request_header_provider_registry]
    assert auth.GoogleIdTokenHeaderProvider in kinds


def test_inert_until_activated():
    provider = auth.GoogleIdTokenHeaderProvider()
    auth.activate(None)
    assert provider.in_context() is False
    assert provider.request_headers() == {}


@pytest.mark.parametrize("env,mode", [
    ({"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"}, "none"),
    ({"MLFLOW_TRACKING_URI": "http://localhost:5000"}, "none"),
    ({"MLFLOW_TRACKING_URI": "https://mlflow-x.a.run.app"}, "google"),
    ({"MLFLOW_TRACKING_URI": "http://10.0.0.5:5000"}, "google"),
    ({"MLFLOW_TRACKING_URI": "https://mlflow-x.a.run.app", "MLFLOW_TRACKING_TOKEN": "t-123456"}, "mlflow"),
    ({"MLFLOW_TRACKING_URI": "https://h", "MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "p"},
     "mlflow"),
    ({"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000", "TRAINER_RUNTIME_AUTH": "google"}, "google"),
])
def test_auto_mode(env, mode):
    assert auth.resolve_mode(load_config(env))[0] == mode


def test_audience_defaults_to_the_origin():
    cfg = load_config({"MLFLOW_TRACKING_URI": "https://mlflow-x.a.run.app/some/prefix"})
    assert auth.default_audience(cfg) == "https://mlflow-x.a.run.app"


def _hammer(provider, threads=16, calls=10) -> list[str]:
    headers: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work():
        try:
            for _ in range(calls):
                value = provider.request_headers()["Authorization"]
                with lock:
                    headers.append(value)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)
    assert errors == []
    return headers


def test_thread_safe_one_token_for_many_threads(metadata):
    source = auth.GoogleIdTokenSource("https://mlflow-x.a.run.app")
    auth.activate(source)
    try:
        headers = _hammer(auth.GoogleIdTokenHeaderProvider())
    finally:
        auth.activate(None)
    assert len(headers) == 160
    assert len(set(headers)) == 1 and headers[0].startswith("Bearer ey")
    assert metadata.control.stats()["tokens_issued"] == 1


def test_short_lived_tokens_are_refreshed_never_bearer_none(metadata):
    # google-auth refreshes when fewer than ~225 s remain, so a 200 s token is refreshed on every use.
    metadata.control.set(lifetime=200)
    source = auth.GoogleIdTokenSource("https://mlflow-x.a.run.app")
    auth.activate(source)
    try:
        headers = _hammer(auth.GoogleIdTokenHeaderProvider(), threads=4, calls=5)
    finally:
        auth.activate(None)
    assert all(h.startswith("Bearer ey") for h in headers)
    issued = metadata.control.stats()["tokens_issued"]
    assert issued == 20 == source.refreshes, "each use refreshed, one at a time under the lock"


def test_identity_is_the_service_account_email(metadata):
    source = auth.GoogleIdTokenSource("https://a.run.app")
    source.token()
    assert source.identity() == "trainer@test-project.iam.gserviceaccount.com"
    assert source.source.kind == "metadata server"


def test_no_credential_source_is_a_typed_error_naming_what_was_tried(tmp_path):
    """A fresh process whose metadata host is a closed port and with no key file."""
    from tests.harness.procs import free_port

    port = free_port()
    code = ("from trainer_runtime.tracking.auth import GoogleIdTokenSource\n"
            "from trainer_runtime.core.errors import TrackingAuthError\n"
            "try:\n    GoogleIdTokenSource('https://a.run.app').token()\n"
            "except TrackingAuthError as e:\n    print('TYPE', type(e).__name__); print(e)\n")
    env = dict(os.environ, GCE_METADATA_HOST=f"127.0.0.1:{port}", GCE_METADATA_IP=f"127.0.0.1:{port}",
               GCE_METADATA_TIMEOUT="1")
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert "TYPE TrackingAuthError" in out.stdout, out.stderr
    assert "GOOGLE_APPLICATION_CREDENTIALS (unset)" in out.stdout
    assert f"metadata server (127.0.0.1:{port})" in out.stdout
    assert "fix:" in out.stdout


def test_a_missing_key_file_is_a_typed_error(tmp_path, monkeypatch):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "nope.json"))
    with pytest.raises(TrackingAuthError, match="nope.json"):
        auth.GoogleIdTokenSource("https://a.run.app").token()
