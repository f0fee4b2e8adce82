"""Server checks before training: health (with cold-start retries), a real API call, version.

The API call is the experiment lookup the run needs anyway (``experiments/get-by-name``),
so the preflight costs no round trip of its own beyond /health and /version.

All HTTP goes through MLflow's own ``http_request`` (so the registered header
providers add auth), with MLflow's retries off: retries here are ours, bounded
by one total time budget, and each one is logged as "attempt i of n: reason".
"""
from __future__ import annotations

import json
import logging
import random
import re
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import quote, urlsplit

from trainer_runtime.core.errors import (HostHeaderError, RuntimeFailure, TrackingApiError, TrackingAuthError,
                     TrackingEndpointError, TrackingUnavailableError)
from trainer_runtime.core.retry import Backoff, Deadline, GaveUp, retry

log = logging.getLogger(__name__)

RETRYABLE = {408, 429} | set(range(500, 600))
HOST_HEADER_MARKER = "Invalid Host header"


@dataclass(frozen=True)
class Reply:
    status: int | None          # None: no HTTP answer at all
    body: str = ""
    error: str = ""             # connection-level failure, when status is None


#: characters of an answer kept (error messages quote 300; an experiment's JSON must parse whole)
MAX_BODY = 100_000


@dataclass(frozen=True)
class ExperimentLookup:
    """What the API check learnt of the run's experiment: ``experiment_id`` None when the server
    says it does not exist (yet)."""

    experiment_id: str | None
    lifecycle_stage: str = "active"


@dataclass(frozen=True)
class ServerFacts:
    version: str
    #: None when the answer could not be read (the caller looks the experiment up itself)
    experiment: ExperimentLookup | None


#: (endpoint, timeout seconds) -> Reply
Probe = Callable[[str, float], Reply]


def mlflow_probe(tracking_uri: str) -> Probe:
    """A probe through mlflow.utils.rest_utils.http_request with MLflow's retries turned off."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking._tracking_service.utils import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    host_creds = get_default_host_creds(tracking_uri)

    def probe(endpoint: str, timeout: float) -> Reply:
        try:
            resp = http_request(host_creds, endpoint, "GET", max_retries=0, backoff_factor=0,
                                retry_codes=(), raise_on_status=False, timeout=timeout)
        except MlflowException as exc:
            return Reply(None, error=_short(str(exc)))
        except RuntimeFailure:
            raise
        except Exception as exc:  # requests/urllib3 errors that MLflow did not wrap
            return Reply(None, error=_short(f"{type(exc).__name__}: {exc}"))
        return Reply(resp.status_code, resp.text[:MAX_BODY])

    return probe


_CAUSES = (re.compile(r"\[Errno -?\d+\] [^'\")]+"), re.compile(r"Read timed out[^'\")]*"),
           re.compile(r"Connection aborted[^'\")]*"), re.compile(r"RemoteDisconnected\([^)]*\)"))


def _short(text: str) -> str:
    """One line; for connection errors just the cause ("[Errno 111] Connection refused")."""
    text = " ".join(text.split())
    for pattern in _CAUSES:
        found = pattern.search(text)
        if found:
            return found.group(0).strip()
    return text if len(text) <= 300 else text[:300] + "…"


@dataclass
class AuthContext:
    """What the error messages say about auth: mode, audience and who we are."""

    mode: str
    audience: str | None = None
    identity: Callable[[], str | None] = lambda: None


def _auth_error(status: int, uri: str, endpoint: str, auth: AuthContext) -> TrackingAuthError:
    where = f"{status} from {uri}{endpoint}"
    if auth.mode == "none":
        return TrackingAuthError(f"{where}: the server requires authentication and none is configured",
                                 hint="set TRAINER_RUNTIME_AUTH=google for Cloud Run/IAP, or "
                                      "MLFLOW_TRACKING_TOKEN / MLFLOW_TRACKING_USERNAME+PASSWORD")
    if auth.mode == "mlflow":
        return TrackingAuthError(f"{where}: the server refused MLflow's token/basic credentials",
                                 hint="check MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/PASSWORD")
    who = auth.identity() or "the runtime's service account"
    if status == 401:
        return TrackingAuthError(
            f"{where}: the ID token of {who} was rejected (wrong audience or expired); audience "
            f"used: {auth.audience}",
            hint="Cloud Run: the audience must be the service URL (the default); IAP: set "
                 "TRAINER_RUNTIME_AUDIENCE to the IAP OAuth client ID")
    host = urlsplit(uri).hostname
    return TrackingAuthError(
        f"{where}: {who} is not allowed to call the tracking server",
        hint=f"grant roles/run.invoker on the Cloud Run service ({host}) to {who}: gcloud run services "
             f"add-iam-policy-binding SERVICE --region REGION --member=serviceAccount:{who} "
             f"--role=roles/run.invoker")


def classify(reply: Reply, uri: str, endpoint: str, auth: AuthContext) -> str | RuntimeFailure:
    """'ok', 'retry:<reason>', or the error to raise at once."""
    if reply.status is None:
        return f"retry:no answer ({reply.error})"
    if reply.status == 200:
        return "ok"
    if reply.status in RETRYABLE:
        return f"retry:HTTP {reply.status}"
    if reply.status == 403 and HOST_HEADER_MARKER in reply.body:
        host = urlsplit(uri).netloc
        return HostHeaderError(
            f"403 from {uri}{endpoint}: MLflow's Host-header check refused Host '{host}' "
            "(/health is exempt from that check, so the server looked healthy)",
            hint=f"start the server with --allowed-hosts including {host} (or set "
                 "MLFLOW_SERVER_ALLOWED_HOSTS on the Cloud Run service)")
    if reply.status in (401, 403):
        return _auth_error(reply.status, uri, endpoint, auth)
    if reply.status == 404:
        if endpoint.startswith("/api/") and _is_mlflow_error(reply.body, "RESOURCE_DOES_NOT_EXIST"):
            return "ok"
        return TrackingEndpointError(
            f"404 from {uri}{endpoint}: nothing there, so the tracking URI has the wrong host or path prefix",
            hint="use the server's root URL, the one whose /health answers (e.g. https://mlflow-….run.app, "
                 "or https://host/prefix if the server runs with --static-prefix or behind a path)")
    return TrackingApiError(f"HTTP {reply.status} from {uri}{endpoint}: {_short(reply.body)}",
                            hint="check the server's logs for this request")


def _is_mlflow_error(body: str, code: str) -> bool:
    try:
        return json.loads(body).get("error_code") == code
    except (ValueError, AttributeError):
        return False


@dataclass
class Checker:
    """Runs endpoint checks under one shared deadline. Injectable time for tests."""

    uri: str
    probe: Probe
    auth: AuthContext
    deadline: Deadline
    request_timeout: float = 30.0
    #: between tries after an HTTP answer that says "later" (429, 502-504)
    backoff: Backoff = Backoff()
    #: between tries of /health, and of any call that got no answer (refused, timed out): a cheap
    #: poll, so training starts within about a second of a cold server turning healthy
    poll: Backoff = Backoff(initial=0.25, factor=2.0, maximum=1.0)
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random | None = None
    #: seconds between the warnings of one waiting check (the first few tries are always logged)
    log_every: float = 10.0

    def get(self, endpoint: str, what: str) -> Reply:
        """GET until it is 'ok', raising a typed error when it cannot be."""
        attempts = self.poll.max_attempts(self.deadline.seconds)
        delays, polls = self.backoff.delays(self.rng), self.poll.delays(self.rng)
        logged_at: list[float] = []

        def once(attempt: int) -> Reply:
            timeout = max(0.1, min(self.request_timeout, self.deadline.remaining()))
            reply = self.probe(endpoint, timeout)
            verdict = classify(reply, self.uri, endpoint, self.auth)
            if isinstance(verdict, RuntimeFailure):
                raise verdict
            if verdict != "ok":
                raise _NotYet(verdict.split(":", 1)[1], fast=reply.status is None or endpoint == "/health")
            if attempt > 1:
                log.info("%s ok on attempt %s after %.1fs", what, attempt, self.deadline.elapsed())
            return reply

        def warn(attempt: int, failure: BaseException, _delay: float = 0.0) -> None:
            elapsed, remaining = self.deadline.elapsed(), self.deadline.remaining()
            if attempt <= 3 or not logged_at or elapsed - logged_at[-1] >= self.log_every or remaining <= 0:
                logged_at.append(elapsed)
                log.warning("%s attempt %s of at most %s: %s (%.0fs of %.0fs budget left)", what, attempt,
                            attempts, failure, remaining, self.deadline.seconds)

        def pause(failure: BaseException) -> float:
            return next(polls if getattr(failure, "fast", False) else delays)

        try:
            return retry(once, retryable=_retryable, delays=pause, deadline=self.deadline, sleep=self.sleep,
                         on_retry=warn, last_try_at_deadline=True)
        except GaveUp as gave_up:
            warn(gave_up.attempts, gave_up.last)
            raise TrackingUnavailableError(
                f"{self.uri} did not answer {endpoint} within the {self.deadline.seconds:.0f}s preflight "
                f"budget ({gave_up.attempts} attempts; last: {gave_up.last})",
                hint="check that the server is up (Cloud Run: its logs and min-instances), or raise "
                     "TRAINER_RUNTIME_PREFLIGHT_TIMEOUT if cold starts take longer") from None


class _NotYet(TrackingUnavailableError):
    """One try the server answered "later" (429, 5xx) or not at all: tried again within the budget.
    ``fast``: poll again soon (no answer, or /health) rather than back off."""

    def __init__(self, reason: str, *, fast: bool) -> None:
        super().__init__(reason)
        self.fast = fast


def _retryable(failure: BaseException) -> bool:
    """The error classes say which failures a later try may cure (``RuntimeFailure.retryable``)."""
    return isinstance(failure, RuntimeFailure) and failure.retryable


def check_server(checker: Checker, experiment_name: str) -> ServerFacts:
    """Health, then a real API call (the experiment's lookup), then the version."""
    checker.get("/health", "health check")
    # /health skips MLflow's Host-header check; a real API call does not.
    lookup = checker.get(f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={quote(experiment_name)}",
                         "API check")
    reply = checker.probe("/version", max(0.1, min(checker.request_timeout, checker.deadline.remaining())))
    version = reply.body.strip() if reply.status == 200 and reply.body.strip() else "unknown"
    return ServerFacts(version, read_experiment(lookup))


def read_experiment(reply: Reply) -> ExperimentLookup | None:
    """The get-by-name answer as an :class:`ExperimentLookup`; None if it cannot be read."""
    if reply.status == 404:  # classify() let it through: MLflow's RESOURCE_DOES_NOT_EXIST
        return ExperimentLookup(None)
    try:
        experiment = json.loads(reply.body)["experiment"]
        return ExperimentLookup(str(experiment["experiment_id"]), experiment.get("lifecycle_stage", "active"))
    except (ValueError, KeyError, TypeError):
        return None
