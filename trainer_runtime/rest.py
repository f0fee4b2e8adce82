"""MLflow's REST API on the runtime's own bounded policy: one try per call, a short timeout.

``MlflowClient`` sends every call through urllib3 with MLflow's defaults (7
retries, backoff factor 2, a 120 s timeout): against a down server one call
takes minutes, and nothing can interrupt it. The logger and the close path need
the opposite: a call that fails fast, and a retry loop of their own that close
can cut short. The requests still go through MLflow's own transport
(``http_request``: its host credentials, TLS settings and request-header
providers, so the Google ID token is attached as everywhere else); only the
retry count and the timeout are ours, per call, not process-wide.
"""
from __future__ import annotations

import json
import math
from typing import Any

from .redact import redact

LOG_BATCH = "/api/2.0/mlflow/runs/log-batch"
UPDATE_RUN = "/api/2.0/mlflow/runs/update"
CREATE_RUN = "/api/2.0/mlflow/runs/create"


class SendError(Exception):
    """One call failed. ``rejected``: the server refused the content (retrying cannot help)."""

    def __init__(self, message: str, *, rejected: bool = False, retryable: bool = True) -> None:
        super().__init__(message)
        self.rejected = rejected
        self.retryable = retryable and not rejected


def json_number(value: float) -> Any:
    """A float as MLflow's proto3 JSON carries it: NaN and infinities as strings."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


class MlflowRest:
    """The two calls the logger and the close path make, each tried exactly once."""

    def __init__(self, tracking_uri: str) -> None:
        from mlflow.utils.credentials import get_default_host_creds

        self.tracking_uri = tracking_uri
        self._creds = get_default_host_creds(tracking_uri)

    def log_batch(self, run_id: str, metrics: list[dict], params: list[dict], tags: list[dict],
                  timeout: float) -> None:
        """``metrics``: dicts with key, value, timestamp (ms), step; params/tags: key, value."""
        body = {"run_id": run_id,
                "metrics": [dict(m, value=json_number(m["value"])) for m in metrics],
                "params": params, "tags": tags}
        self._post(LOG_BATCH, body, timeout)

    def update_run(self, run_id: str, status: str, end_time_ms: int, timeout: float) -> None:
        self._post(UPDATE_RUN, {"run_id": run_id, "status": status, "end_time": end_time_ms}, timeout)

    def create_run(self, experiment_id: str, run_name: str, tags: dict[str, str], start_time_ms: int,
                   timeout: float) -> str:
        """A new RUNNING run (a Tuner's trial, nested by its ``mlflow.parentRunId`` tag); its id."""
        body = {"experiment_id": experiment_id, "run_name": run_name, "start_time": start_time_ms,
                "tags": [{"key": key, "value": value} for key, value in tags.items()]}
        return self._post(CREATE_RUN, body, timeout)["run"]["info"]["run_id"]

    def _post(self, endpoint: str, body: dict, timeout: float) -> dict:
        from mlflow.exceptions import MlflowException, RestException
        from mlflow.utils.rest_utils import http_request, verify_rest_response

        try:
            response = http_request(self._creds, endpoint, "POST", max_retries=0, backoff_factor=0,
                                    timeout=max(0.1, timeout), data=json.dumps(body),
                                    extra_headers={"Content-Type": "application/json"})
            verify_rest_response(response, endpoint)
            return json.loads(response.text or "{}")
        except RestException as exc:
            code = exc.error_code
            raise SendError(f"{endpoint}: {code}: {_first_line(exc)}",
                            rejected=code == "INVALID_PARAMETER_VALUE",
                            retryable=code != "RESOURCE_DOES_NOT_EXIST") from exc
        except MlflowException as exc:
            raise SendError(f"{endpoint}: {_first_line(exc)}") from exc
        except (OSError, ValueError) as exc:  # ValueError: a body that is not JSON (a proxy's page)
            raise SendError(f"{endpoint}: {type(exc).__name__}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return redact(text.splitlines()[0] if text else type(exc).__name__)[:300]
