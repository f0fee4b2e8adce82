"""The MLflow calls that record a run's model and lineage, each tried once on a short timeout.

Same policy as :mod:`trainer_runtime.rest` (MLflow's own transport, its credentials
and request-header providers, but ``max_retries=0`` and our timeout), for the
calls the logger does not make: read a run, log dataset inputs, write a small
artifact, create a registered model and a version. ``MlflowClient`` would send
each through urllib3's hidden retries (7 tries, backoff 2, 120 s timeout):
minutes against a down server, at the end of a training that has already
succeeded.
"""
from __future__ import annotations

import json
import posixpath
from typing import Any
from urllib.parse import quote, urlsplit

from .redact import redact

#: what a server without a Model Registry (or a proxy that blocks it) answers
UNAVAILABLE_CODES = ("ENDPOINT_NOT_FOUND", "FEATURE_DISABLED", "NOT_IMPLEMENTED")
UNAVAILABLE_STATUS = (404, 405, 501)


class ApiError(Exception):
    """One call failed. ``status``: the HTTP status (None: no answer); ``code``: MLflow's error code."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    @property
    def endpoint_missing(self) -> bool:
        """The server (or what is in front of it) has no such API, as opposed to a failed call."""
        return self.code in UNAVAILABLE_CODES or (self.status in UNAVAILABLE_STATUS
                                                  and self.code != "RESOURCE_DOES_NOT_EXIST")


class BoundedApi:
    """A handful of MLflow REST calls on the runtime's own bounded policy."""

    def __init__(self, tracking_uri: str, timeout: float) -> None:
        from mlflow.utils.credentials import get_default_host_creds

        self.tracking_uri = tracking_uri
        self.timeout = timeout
        self._creds = get_default_host_creds(tracking_uri)

    def call(self, endpoint: str, body: dict | None = None, method: str = "POST") -> dict:
        """JSON in, JSON out; raises ApiError."""
        kwargs: dict[str, Any] = {}
        if method == "GET":
            kwargs["params"] = body or {}
        else:
            kwargs["data"] = json.dumps(body or {})
            kwargs["extra_headers"] = {"Content-Type": "application/json"}
        response = self._request(endpoint, method, **kwargs)
        try:
            return json.loads(response.text or "{}")
        except ValueError as exc:
            raise ApiError(f"{endpoint}: the answer is not JSON: {response.text[:120]!r}",
                           status=response.status_code) from exc

    def get_run(self, run_id: str) -> dict:
        return self.call("/api/2.0/mlflow/runs/get", {"run_id": run_id}, method="GET")["run"]

    def log_inputs(self, run_id: str, datasets: list[dict]) -> None:
        self.call("/api/2.0/mlflow/runs/log-inputs", {"run_id": run_id, "datasets": datasets})

    def put_artifact(self, artifact_uri: str, path: str, content: bytes, content_type: str) -> str:
        """Upload ``content`` to ``<artifact_uri>/<path>``; returns the artifact's URI.

        Proxied artifacts (``mlflow-artifacts:``, the usual Cloud Run setup) are one
        bounded PUT here. Other stores (``gs://`` read directly by clients) go through
        MLflow's artifact repository, whose own retries the caller's budget bounds.
        """
        if urlsplit(artifact_uri).scheme == "mlflow-artifacts":
            root = urlsplit(artifact_uri).path.strip("/")
            endpoint = "/api/2.0/mlflow-artifacts/artifacts/" + quote(posixpath.join(root, path))
            self._request(endpoint, "PUT", data=content, extra_headers={"Content-Type": content_type})
        else:
            import os
            import tempfile

            from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

            with tempfile.TemporaryDirectory() as tmp:
                local = os.path.join(tmp, posixpath.basename(path))
                with open(local, "wb") as fh:
                    fh.write(content)
                get_artifact_repository(artifact_uri).log_artifact(local, posixpath.dirname(path) or None)
        return f"{artifact_uri.rstrip('/')}/{path}"

    def _request(self, endpoint: str, method: str, **kwargs: Any) -> Any:
        from mlflow.exceptions import MlflowException, RestException
        from mlflow.utils.rest_utils import http_request, verify_rest_response

        try:
            response = http_request(self._creds, endpoint, method, max_retries=0, backoff_factor=0,
                                    timeout=max(0.1, self.timeout), **kwargs)
        except MlflowException as exc:  # MLflow wraps connection errors and timeouts
            raise ApiError(f"{endpoint}: {_first_line(exc)}") from exc
        except OSError as exc:
            raise ApiError(f"{endpoint}: {type(exc).__name__}: {_first_line(exc)}") from exc
        try:
            verify_rest_response(response, endpoint)
        except RestException as exc:
            raise ApiError(f"{endpoint}: {exc.error_code}: {_first_line(exc)}", status=response.status_code,
                           code=exc.error_code) from exc
        except MlflowException as exc:  # not MLflow's JSON error: a proxy's page, a plain 404
            raise ApiError(f"{endpoint}: HTTP {response.status_code}: {response.text[:120]!r}",
                           status=response.status_code) from exc
        return response


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return redact(text.splitlines()[0] if text else type(exc).__name__)[:300]
