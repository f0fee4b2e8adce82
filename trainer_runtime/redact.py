"""Keep secrets out of logs, status files and MLflow params/tags.

Known secret values (MLflow's token/password, every ID token we mint) are
registered here and replaced wherever they appear; bearer headers, JWT-shaped
strings and ``user:pass@`` in URLs are masked by pattern as a second net.
"""
from __future__ import annotations

import re
import threading
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
_SECRET_KEY = re.compile(r"token|password|passwd|secret|credential|api[_-]?key|private[_-]?key|auth",
                         re.IGNORECASE)
_PATTERNS = [
    (re.compile(r"(?i)(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + MASK),
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), MASK),
    (re.compile(r"(?i)([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1" + MASK + "@"),
    (re.compile(r"(?i)((?:access_)?token|password|secret|sig|key)=([^&\s]+)"), r"\1=" + MASK),
]

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Mask this exact value from now on (ignored if empty or too short to be a secret)."""
    if value and len(value) >= 6:
        with _lock:
            _secrets.add(value)


def register_env_secrets(env) -> None:
    """Mask MLflow's own credentials, which MLflow reads from the environment."""
    for name in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD"):
        register_secret(env.get(name))


def redact(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def is_secret_key(key: str) -> bool:
    """Whether a config/param key names something that must never be logged."""
    return bool(_SECRET_KEY.search(key))


def strip_credentials(uri: str) -> str:
    """The URI without user info, query or fragment: safe to log and record."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return redact(uri)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
