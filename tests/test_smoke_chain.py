"""Smoke test through the whole chain with real parts:

google-auth (real code) gets an ID token from the local metadata server, the
mlflow-skinny client sends it through the auth proxy (which verifies it like
Cloud Run), and an experiment and a run are created on the live server and read back.
"""
from __future__ import annotations

import uuid


def test_id_token_through_auth_proxy_to_live_mlflow(metadata, auth_proxy, clean_env):
    import google.auth.transport.requests
    import google.oauth2.id_token
    from mlflow import MlflowClient

    request = google.auth.transport.requests.Request()
    creds = google.oauth2.id_token.fetch_id_token_credentials(auth_proxy.url, request=request)
    creds.refresh(request)
    assert metadata.control.stats()["audiences"] == [auth_proxy.url]

    clean_env.setenv("MLFLOW_TRACKING_TOKEN", creds.token)
    client = MlflowClient(tracking_uri=auth_proxy.url)
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    exp_id = client.create_experiment(name)
    run = client.create_run(exp_id, run_name="smoke")
    client.log_metric(run.info.run_id, "loss", 0.5, step=1)
    back = client.get_run(run.info.run_id)
    assert back.data.metrics == {"loss": 0.5}
    assert client.get_experiment_by_name(name).experiment_id == exp_id
    shapes = auth_proxy.control.stats()["auth_shapes"]
    assert set(shapes) == {"Bearer <jwt>"}


def test_proxy_rejects_requests_without_a_valid_token(metadata, auth_proxy, clean_env):
    """The proxy must really check: no token is 403, garbage is 401."""
    from tests.harness.procs import http_status

    url = f"{auth_proxy.url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=x"
    assert http_status(url) == 403
    assert http_status(url, headers={"Authorization": "Bearer not.a.jwt"}) == 401
    assert http_status(url, headers={"Authorization": "Bearer None"}) == 401
