"""Logging for the whole process, on every wiring: JSON lines on GCP, plain text locally.

``setup()`` is called by the entrypoints (`trainer-runtime`, the ``default_commands``
forwarder) before anything else, and again by ``session.run_tracked`` at the start of
every run: under TFX the process belongs to someone else (the user's script running
LocalDagRunner, TFX's ``kubeflow_v2_run_executor`` on Vertex), and absl's ``app.run()``
swaps the root handlers (``use_absl_handler()`` takes stderr stream handlers, ours
included, off the root logger and puts its own on). Each call is idempotent: one
handler of ours on the root logger, no other root handler writing to stderr, so a
record is written once.

Every handler gets the redaction filter, so no token, password or
credential-bearing URI reaches a log line, whoever logged it (MLflow, urllib3, ...).
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from typing import Mapping, TextIO

from trainer_runtime.core import envvars
from trainer_runtime.core.redact import redact

_SEVERITY = {logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARNING",
             logging.ERROR: "ERROR", logging.CRITICAL: "CRITICAL"}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Libraries whose INFO lines are chatter in a Trainer's log; held at WARNING unless asked.
CHATTY = ("apache_beam",)


class _State:
    handler: "RuntimeHandler | None" = None
    log_format: str | None = None
    run_id: str | None = None


_STATE = _State()


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = redact(record.getMessage())
        record.msg, record.args = message, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line with ``severity`` and ``message``, as Cloud Logging parses,
    and ``mlflow_run_id`` once the run exists."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_text:
            message = f"{message}\n{record.exc_text}"
        entry = {"severity": _SEVERITY.get(record.levelno, "DEFAULT"), "message": message,
                 "logger": record.name,
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                 + f".{int(record.msecs):03d}Z"}
        if _STATE.run_id:
            entry["mlflow_run_id"] = _STATE.run_id
        return json.dumps(entry, ensure_ascii=False)


class RuntimeHandler(logging.StreamHandler):
    """The runtime's handler: writes to whatever ``sys.stderr`` is when a record comes
    (pytest, ipykernel and absl swap it), unless given a stream."""

    def __init__(self, stream: TextIO | None = None) -> None:
        logging.Handler.__init__(self)
        self._stream = stream

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return self._stream or sys.stderr

    @stream.setter
    def stream(self, value: TextIO | None) -> None:
        self._stream = value


def protect_existing_handlers() -> None:
    """Add the redacting filter to handlers someone else installed (absl's, under TFX)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def on_gcp(env: Mapping[str, str]) -> bool:
    return any(env.get(name) for name in envvars.GCP_MARKERS)


def _absl_handler() -> logging.Handler | None:
    """absl's handler, if absl is loaded (it is under TFX); absl is never imported here."""
    absl_logging = sys.modules.get("absl.logging")
    return absl_logging.get_absl_handler() if absl_logging is not None else None


def _writes_to_stderr(handler: logging.Handler) -> bool:
    if handler is _absl_handler():
        return True
    return isinstance(handler, logging.StreamHandler) and getattr(handler, "stream", None) in (
        sys.stderr, sys.__stderr__)


def setup(log_format: str | None = None, env: Mapping[str, str] | None = None, *,
          beam_level: str | None = None, root_level: int | None = None,
          stream: TextIO | None = None) -> logging.Handler:
    """Install, or put back, the runtime's one handler on the root logger. Idempotent.

    Args:
        log_format: ``json``, ``text`` or ``auto`` (json on GCP). ``None`` keeps the
            format chosen before, else takes ``TRAINER_RUNTIME_LOG_FORMAT`` from ``env``.
        env: the environment (GCP markers, the log-format variable); ``os.environ`` if None.
        beam_level: level for apache_beam's loggers; ``None``: ``TRAINER_RUNTIME_BEAM_LOG_LEVEL``,
            else the level already set (by the user, or a previous call), else ``warning``.
        root_level: set the root logger's level (the entrypoints do; under TFX the
            runner sets its own and the runtime's INFO lines pass regardless).
        stream: write there instead of the current ``sys.stderr`` (tests).

    Returns:
        The handler (tests remove it).
    """
    env = os.environ if env is None else env
    fmt = log_format or _STATE.log_format or env.get(envvars.LOG_FORMAT) or "auto"
    fmt = fmt if fmt in ("auto", "json", "text") else "auto"
    if log_format:
        _STATE.log_format = fmt
    formatter: logging.Formatter = (JsonFormatter() if fmt == "json" or (fmt == "auto" and on_gcp(env))
                                    else logging.Formatter(TEXT_FORMAT))

    root = logging.getLogger()
    handler = _STATE.handler
    if handler is None or handler._stream is not stream:
        handler = RuntimeHandler(stream)
        handler.addFilter(RedactingFilter())
        _STATE.handler = handler
    handler.setFormatter(formatter)
    for other in list(root.handlers):
        if other is not handler and (isinstance(other, RuntimeHandler) or _writes_to_stderr(other)):
            root.removeHandler(other)
    if handler not in root.handlers:
        root.addHandler(handler)
    absl_handler = _absl_handler()
    if absl_handler is not None:
        # Should absl put its handler back (its app.run does), its lines keep our format.
        absl_handler.setFormatter(formatter)
    protect_existing_handlers()
    if absl_handler is not None and not any(isinstance(f, RedactingFilter) for f in absl_handler.filters):
        absl_handler.addFilter(RedactingFilter())

    if root_level is not None:
        root.setLevel(root_level)
    ours = logging.getLogger("trainer_runtime")
    if ours.getEffectiveLevel() > logging.INFO:
        ours.setLevel(logging.INFO)  # the run URL and the status path are always printed
    beam_level = beam_level or env.get(envvars.BEAM_LOG_LEVEL)
    if beam_level or not any(logging.getLogger(name).level for name in CHATTY):
        level = logging.getLevelName((beam_level or "warning").upper())
        for name in CHATTY:
            logging.getLogger(name).setLevel(level)
    # mlflow's pydantic models trip this warning on pydantic 2.9 (the base image's); it is noise.
    warnings.filterwarnings("ignore", message='Field "model_name" in PromptModelConfig')
    return handler


def set_run_id(run_id: str | None) -> None:
    """JSON lines carry ``mlflow_run_id`` from here on (``None``: none)."""
    _STATE.run_id = run_id
