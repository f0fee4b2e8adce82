"""MLflow's REST API on the runtime's own bounded policy: one try per call, a short timeout.

``MlflowClient`` sends every call through urllib3 with MLflow's defaults (7
retries, backoff factor 2, a 120 s timeout): against a down server one call
takes minutes, and nothing can interrupt it. The logger, the close path and the
end of a training that has already succeeded (its model, lineage and best
hyperparameters) need the opposite: a call that fails fast, and, where it is
worth one, a retry loop of their own that close can cut short. The requests
still go through MLflow's own transport (``http_request``: its host
credentials, TLS settings and request-header providers, so the Google ID token
is attached as everywhere else); only the retry count and the timeout are ours,
per call, not process-wide.
"""
from __future__ import annotations

import json
import math
import posixpath
from typing import Any, Callable
from urllib.parse import quote, urlsplit

from trainer_runtime.core.bounded import StillRunning, call_within
from trainer_runtime.core.redact import redact

LOG_BATCH = "/api/2.0/mlflow/runs/log-batch"
UPDATE_RUN = "/api/2.0/mlflow/runs/update"
CREATE_RUN = "/api/2.0/mlflow/runs/create"
GET_RUN = "/api/2.0/mlflow/runs/get"
LOG_INPUTS = "/api/2.0/mlflow/runs/log-inputs"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts/"

#: what a server without a Model Registry (or a proxy that blocks it) answers
UNAVAILABLE_CODES = ("ENDPOINT_NOT_FOUND", "FEATURE_DISABLED", "NOT_IMPLEMENTED")
UNAVAILABLE_STATUS = (404, 405, 501)


class RestError(Exception):
    """One call failed. ``status``: the HTTP status (None: no answer); ``code``: MLflow's error code
    (None: the answer was not MLflow's JSON error, e.g. a proxy's page)."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    @property
    def rejected(self) -> bool:
        """The server refused the content: sending it again cannot help."""
        return self.code == "INVALID_PARAMETER_VALUE"

    @property
    def retryable(self) -> bool:
        """The same call may succeed later (no answer, a server or proxy error)."""
        return not self.rejected and self.code != "RESOURCE_DOES_NOT_EXIST"

    @property
    def endpoint_missing(self) -> bool:
        """The server (or what is in front of it) has no such API, as opposed to a failed call."""
        return self.code in UNAVAILABLE_CODES or (self.status in UNAVAILABLE_STATUS
                                                  and self.code != "RESOURCE_DOES_NOT_EXIST")


def json_number(value: float) -> Any:
    """A float as MLflow's proto3 JSON carries it: NaN and infinities as strings."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


#: modules MLflow's transport imports on every request to learn where it runs (Databricks' runtime, a
#: Spark session): found by a probe of the imports the sender thread makes
PROBED_MODULES = ("dbruntime", "pyspark")


def settle_transport() -> list[str]:
    """Mark the modules MLflow's transport probes for on every request as absent, when they are.

    Off Databricks, ``http_request`` fails ``from dbruntime… import`` on every call, through the
    import machinery and MLflow's own post-import-hook lock, which ``mlflow.autolog()`` holds while
    it imports integrations: the logger's sender thread and a user's autolog call then deadlock
    (measured: a TrackedExecutor training hung at ``mlflow.autolog()`` until killed). ``None`` in
    ``sys.modules`` (Python's documented marker) ends such an import before any finder runs.
    Call it on the main thread before training starts; returns the names it marked.
    """
    import importlib.util
    import sys

    marked = []
    for name in PROBED_MODULES:
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            sys.modules[name] = None  # type: ignore[assignment]
            marked.append(name)
    return marked


class MlflowRest:
    """The MLflow calls the runtime makes itself, each tried exactly once.

    ``timeout``: seconds one call may take unless the call passes its own. Every
    method raises :class:`RestError`.
    """

    def __init__(self, tracking_uri: str, timeout: float = 10.0) -> None:
        from mlflow.utils.credentials import get_default_host_creds

        self.tracking_uri = tracking_uri
        self.timeout = timeout
        self._creds = get_default_host_creds(tracking_uri)

    def call(self, endpoint: str, body: dict | None = None, method: str = "POST",
             timeout: float | None = None) -> dict:
        """JSON in, JSON out."""
        kwargs: dict[str, Any] = {}
        if method == "GET":
            kwargs["params"] = body or {}
        else:
            kwargs["data"] = json.dumps(body or {})
            kwargs["extra_headers"] = {"Content-Type": "application/json"}
        response = self._request(endpoint, method, timeout, **kwargs)
        try:
            return json.loads(response.text or "{}")
        except ValueError as exc:
            raise RestError(f"{endpoint}: the answer is not JSON: {response.text[:120]!r}",
                            status=response.status_code) from exc

    def log_batch(self, run_id: str, metrics: list[dict], params: list[dict], tags: list[dict],
                  timeout: float | None = None) -> None:
        """``metrics``: dicts with key, value, timestamp (ms), step; params/tags: key, value."""
        body = {"run_id": run_id,
                "metrics": [dict(m, value=json_number(m["value"])) for m in metrics],
                "params": params, "tags": tags}
        self.call(LOG_BATCH, body, timeout=timeout)

    def update_run(self, run_id: str, status: str, end_time_ms: int, timeout: float | None = None) -> None:
        self.call(UPDATE_RUN, {"run_id": run_id, "status": status, "end_time": end_time_ms}, timeout=timeout)

    def create_run(self, experiment_id: str, run_name: str, tags: dict[str, str], start_time_ms: int,
                   timeout: float | None = None) -> str:
        """A new RUNNING run (a Tuner's trial, nested by its ``mlflow.parentRunId`` tag); its id."""
        body = {"experiment_id": experiment_id, "run_name": run_name, "start_time": start_time_ms,
                "tags": [{"key": key, "value": value} for key, value in tags.items()]}
        return self.call(CREATE_RUN, body, timeout=timeout)["run"]["info"]["run_id"]

    def get_run(self, run_id: str, timeout: float | None = None) -> dict:
        return self.call(GET_RUN, {"run_id": run_id}, method="GET", timeout=timeout)["run"]

    def artifact_uri(self, run_id: str, timeout: float | None = None) -> str:
        """Where ``run_id``'s artifacts go (``mlflow-artifacts:/…``, ``gs://…``), for :meth:`put_artifact`."""
        return self.get_run(run_id, timeout)["info"]["artifact_uri"]

    def log_inputs(self, run_id: str, datasets: list[dict], timeout: float | None = None) -> None:
        self.call(LOG_INPUTS, {"run_id": run_id, "datasets": datasets}, timeout=timeout)

    def put_artifact(self, artifact_uri: str, path: str, content: bytes, content_type: str,
                     timeout: float | None = None) -> str:
        """Upload ``content`` to ``<artifact_uri>/<path>`` within the timeout; returns the artifact's URI.

        Proxied artifacts (``mlflow-artifacts:``, the usual Cloud Run setup) are one
        bounded PUT here. Other stores (``gs://`` written directly by clients) go through
        MLflow's artifact repository, whose own retries and timeouts are not ours: it
        runs on a daemon thread that the timeout stops waiting for (RestError).
        """
        seconds = self.timeout if timeout is None else timeout
        if urlsplit(artifact_uri).scheme == "mlflow-artifacts":
            root = urlsplit(artifact_uri).path.strip("/")
            endpoint = ARTIFACTS + quote(posixpath.join(root, path))
            self._request(endpoint, "PUT", seconds, data=content, extra_headers={"Content-Type": content_type})
        else:
            _within(seconds, lambda: _repository_upload(artifact_uri, path, content),
                    f"{artifact_uri.rstrip('/')}/{path}")
        return f"{artifact_uri.rstrip('/')}/{path}"

    def put_artifact_file(self, artifact_uri: str, path: str, local_path: str, timeout: float | None = None) -> str:
        """:meth:`put_artifact` for the file at ``local_path`` (streamed, not read into memory)."""
        seconds = self.timeout if timeout is None else timeout
        if urlsplit(artifact_uri).scheme == "mlflow-artifacts":
            root = urlsplit(artifact_uri).path.strip("/")
            endpoint = ARTIFACTS + quote(posixpath.join(root, path))
            with open(local_path, "rb") as fh:
                self._request(endpoint, "PUT", seconds, data=fh,
                              extra_headers={"Content-Type": "application/octet-stream"})
        else:
            _within(seconds, lambda: _repository_upload_file(artifact_uri, path, local_path),
                    f"{artifact_uri.rstrip('/')}/{path}")
        return f"{artifact_uri.rstrip('/')}/{path}"

    def _request(self, endpoint: str, method: str, timeout: float | None, **kwargs: Any) -> Any:
        from mlflow.exceptions import MlflowException, RestException
        from mlflow.utils.rest_utils import http_request, verify_rest_response

        seconds = self.timeout if timeout is None else timeout
        try:
            response = http_request(self._creds, endpoint, method, max_retries=0, backoff_factor=0,
                                    timeout=max(0.1, seconds), **kwargs)
        except MlflowException as exc:  # MLflow wraps connection errors and timeouts
            raise RestError(f"{endpoint}: {_first_line(exc)}") from exc
        except OSError as exc:
            raise RestError(f"{endpoint}: {type(exc).__name__}: {_first_line(exc)}") from exc
        try:
            verify_rest_response(response, endpoint)
        except RestException as exc:
            raise RestError(f"{endpoint}: {exc.error_code}: {_first_line(exc)}", status=response.status_code,
                            code=exc.error_code) from exc
        except MlflowException as exc:  # not MLflow's JSON error: a proxy's page, a plain 404
            raise RestError(f"{endpoint}: HTTP {response.status_code}: {response.text[:120]!r}",
                            status=response.status_code) from exc
        return response


def _repository_upload(artifact_uri: str, path: str, content: bytes) -> None:
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "content")
        with open(local, "wb") as fh:
            fh.write(content)
        _repository_upload_file(artifact_uri, path, local)


def _repository_upload_file(artifact_uri: str, path: str, local_path: str) -> None:
    import os
    import shutil
    import tempfile

    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    with tempfile.TemporaryDirectory() as tmp:  # the repository names the artifact after the file
        named = os.path.join(tmp, posixpath.basename(path))
        try:
            os.link(local_path, named)
        except OSError:
            shutil.copyfile(local_path, named)
        get_artifact_repository(artifact_uri).log_artifact(named, posixpath.dirname(path) or None)


def _within(seconds: float, work: Callable[[], None], what: str) -> None:
    """``work`` waited for at most ``seconds`` (``core.bounded``); its failure or its lateness as a RestError."""
    try:
        call_within(seconds, work, "trainer-runtime-artifact")
    except StillRunning as exc:
        raise RestError(f"{what}: still uploading after {seconds:g}s") from exc
    except Exception as exc:
        raise RestError(f"{what}: {type(exc).__name__}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return redact(text.splitlines()[0] if text else type(exc).__name__)[:300]
