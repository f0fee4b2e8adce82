"""Logging set-up, done only by the entrypoint: JSON lines on GCP, plain text locally.

Every handler gets the redaction filter, so no token, password or
credential-bearing URI reaches a log line, whoever logged it (MLflow, urllib3, ...).
"""
from __future__ import annotations

import json
import logging
import sys
import time
from typing import Mapping, TextIO

from . import envvars
from .redact import redact

_SEVERITY = {logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARNING",
             logging.ERROR: "ERROR", logging.CRITICAL: "CRITICAL"}


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = redact(record.getMessage())
        record.msg, record.args = message, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line with ``severity`` and ``message``, as Cloud Logging parses."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_text:
            message = f"{message}\n{record.exc_text}"
        entry = {"severity": _SEVERITY.get(record.levelno, "DEFAULT"), "message": message,
                 "logger": record.name,
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                 + f".{int(record.msecs):03d}Z"}
        return json.dumps(entry, ensure_ascii=False)


def protect_existing_handlers() -> None:
    """Add the redacting filter to handlers someone else installed (absl's, under TFX)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def on_gcp(env: Mapping[str, str]) -> bool:
    return any(env.get(name) for name in envvars.GCP_MARKERS)


def configure(log_format: str, env: Mapping[str, str], stream: TextIO | None = None,
              level: int = logging.INFO) -> logging.Handler:
    """Install one redacting handler on the root logger; returns it (tests remove it)."""
    use_json = log_format == "json" or (log_format == "auto" and on_gcp(env))
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_trainer_runtime", False)]:
        root.removeHandler(old)
    handler._trainer_runtime = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    return handler
