"""Auth to the tracking server through MLflow's own plugin point.

``GoogleIdTokenHeaderProvider`` is registered as an ``mlflow.request_header_provider``
entry point (pyproject.toml). MLflow instantiates it at import time and asks it
for headers on every request, from any thread; it stays inert until the runtime
``activate``s a token source. The source keeps one google-auth credentials
object, which refreshes itself before expiry; a lock serialises refreshes.

MLflow only logs a warning when a provider raises and then sends the request
with no header, so the preflight fetches a token itself first and turns any
failure into a TrackingAuthError that names the credential source and the fix.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit

from trainer_runtime.core import envvars
from trainer_runtime.core.config import RuntimeConfig, is_loopback
from trainer_runtime.core.errors import TrackingAuthError
from trainer_runtime.core.redact import register_secret

log = logging.getLogger(__name__)


def resolve_mode(config: RuntimeConfig) -> tuple[str, str]:
    """(mode, why): which auth the run uses. Modes: google, mlflow, none."""
    if config.auth != "auto":
        return config.auth, f"auth={config.auth} was configured"
    if config.mlflow_credentials:
        return "mlflow", f"MLflow {config.mlflow_credentials} credentials are set in the environment"
    if urlsplit(config.tracking_uri).scheme == "http" and is_loopback(config.tracking_uri):
        return "none", "plain-http loopback URI"
    return "google", "remote tracking URI and no MLflow credentials"


def default_audience(config: RuntimeConfig) -> str:
    if config.audience:
        return config.audience
    parts = urlsplit(config.tracking_uri)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class CredentialSource:
    kind: str         # "service-account key" | "metadata server"
    detail: str       # path or host; no secrets


def describe_sources(env: Mapping[str, str]) -> str:
    key = env.get(envvars.GOOGLE_APPLICATION_CREDENTIALS)
    metadata = env.get(envvars.GCE_METADATA_HOST) or "metadata.google.internal"
    return (f"{envvars.GOOGLE_APPLICATION_CREDENTIALS} ({key or 'unset'}), "
            f"then the GCE metadata server ({metadata})")


class GoogleIdTokenSource:
    """Thread-safe ID tokens for one audience, from google-auth's own credential search."""

    def __init__(self, audience: str, env: Mapping[str, str] | None = None, request: Any = None) -> None:
        self.audience = audience
        self._env = env if env is not None else os.environ
        self._request = request
        self._lock = threading.Lock()
        self._creds: Any = None
        self.source: CredentialSource | None = None
        self.refreshes = 0

    def _transport(self) -> Any:
        if self._request is None:
            import google.auth.transport.requests

            self._request = google.auth.transport.requests.Request()
        return self._request

    def _credentials(self) -> Any:
        import google.auth.exceptions
        import google.oauth2.id_token

        if self._creds is None:
            try:
                self._creds = google.oauth2.id_token.fetch_id_token_credentials(
                    self.audience, request=self._transport())
            except google.auth.exceptions.GoogleAuthError as exc:
                raise TrackingAuthError(
                    f"could not find a Google credential to mint an ID token for {self.audience}: "
                    f"tried {describe_sources(self._env)}: {exc}",
                    hint="run with a service account attached (Vertex: the pipeline's service account), "
                         f"or set {envvars.GOOGLE_APPLICATION_CREDENTIALS} to a service-account key; for a "
                         f"server without Google auth set {envvars.AUTH}=none or {envvars.MLFLOW_TRACKING_TOKEN}"
                ) from exc
            key = self._env.get(envvars.GOOGLE_APPLICATION_CREDENTIALS)
            self.source = (CredentialSource("service-account key", key) if key else
                           CredentialSource("metadata server",
                                            self._env.get(envvars.GCE_METADATA_HOST) or "metadata.google.internal"))
        return self._creds

    def token(self) -> str:
        """A valid ID token, refreshed if it is near expiry. Never returns an empty token."""
        import google.auth.exceptions

        with self._lock:
            creds = self._credentials()
            if not creds.valid:
                try:
                    creds.refresh(self._transport())
                except google.auth.exceptions.GoogleAuthError as exc:
                    raise TrackingAuthError(
                        f"the {self.source.kind} ({self.source.detail}) refused an ID token for "
                        f"{self.audience}: {exc}",
                        hint="check that the service account exists and is enabled, and that the "
                             "metadata server or key file is reachable") from exc
                self.refreshes += 1
            token = creds.token
        if not token:
            raise TrackingAuthError(f"the {self.source.kind} returned an empty ID token",
                                    hint="check the credential source; the runtime never sends 'Bearer None'")
        register_secret(token)
        return token

    def identity(self) -> str | None:
        """The service account email, when it can be known without another secret."""
        creds = self._creds
        email = getattr(creds, "service_account_email", None)
        if email and email != "default":
            return email
        if self.source and self.source.kind == "metadata server":
            try:
                from google.auth.compute_engine import _metadata

                return _metadata.get_service_account_info(self._transport())["email"]
            except Exception:  # identity is only for messages; never fail on it
                log.debug("could not read the service account email", exc_info=True)
        return None


_active_lock = threading.Lock()
_active: GoogleIdTokenSource | None = None


def activate(source: GoogleIdTokenSource | None) -> None:
    """Make MLflow send this source's tokens (None: stop sending any)."""
    global _active
    with _active_lock:
        _active = source


def active() -> GoogleIdTokenSource | None:
    return _active


class GoogleIdTokenHeaderProvider:
    """MLflow ``RequestHeaderProvider`` (duck-typed: importing MLflow's base class here
    would make ``import trainer_runtime.tracking.auth`` heavy)."""

    def in_context(self) -> bool:
        return _active is not None

    def request_headers(self) -> dict[str, str]:
        source = _active
        if source is None:
            return {}
        return {"Authorization": f"Bearer {source.token()}"}
