"""The one place that decides how a run ended: stage, MLflow status, exit code, error record."""
from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any

from trainer_runtime.core.errors import InternalError, Killed, RuntimeFailure, UserCodeError
from trainer_runtime.core.redact import redact

TRACEBACK_LINES = 30

#: a run's terminal stage -> its MLflow run status; the only mapping between the two.
MLFLOW_STATUS = {"completed": "FINISHED", "failed": "FAILED", "killed": "KILLED"}


def mlflow_status(stage: str) -> str:
    """The MLflow status of a run that ended in ``stage`` (completed, failed, killed)."""
    return MLFLOW_STATUS[stage]


@dataclass(frozen=True)
class Outcome:
    stage: str              # completed | failed | killed
    exit_code: int
    error: dict[str, Any] | None = None

    @property
    def mlflow_status(self) -> str:
        """FINISHED | FAILED | KILLED, from the stage."""
        return mlflow_status(self.stage)


def _traceback_tail(exc: BaseException) -> str:
    lines = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).splitlines()
    return redact("\n".join(lines[-TRACEBACK_LINES:]))


def error_record(exc: BaseException) -> dict[str, Any]:
    """``{type, message, hint, fault, exit_code, traceback}`` for the status file; secrets masked."""
    if isinstance(exc, Killed):
        return {"type": "Killed", "message": exc.message, "hint": exc.hint, "fault": exc.fault,
                "exit_code": exc.exit_code, "traceback": _traceback_tail(exc)}
    if isinstance(exc, RuntimeFailure):
        shown = exc.__cause__ if isinstance(exc, UserCodeError) and exc.__cause__ else exc
        return {"type": type(exc).__name__, "message": redact(exc.message), "hint": redact(exc.hint),
                "fault": exc.fault, "exit_code": exc.exit_code, "traceback": _traceback_tail(shown)}
    wrapped = InternalError(f"{type(exc).__name__}: {exc}",
                            hint="a bug in trainer-runtime; please report it with this traceback")
    return {"type": "InternalError", "message": redact(wrapped.message), "hint": wrapped.hint,
            "fault": "platform", "exit_code": wrapped.exit_code, "traceback": _traceback_tail(exc)}


def decide(exc: BaseException | None, stopped_by: int | None = None) -> Outcome:
    """Map how the run ended to its outcome. ``None`` means it returned normally.

    ``stopped_by``: the stop signal received before the training ended, if one was. A training that
    then ends with any error was killed: the signal's ``Killed`` lands wherever the main thread is, and
    the code there may turn it into something else (measured in the TFX 1.16 image: TF's C++ layer
    raised a bare ``TypeError``, ``tf_stack``'s ``__exit__`` an ``AssertionError: Concurrent access?``).
    """
    if exc is None:
        return Outcome("completed", 0)
    if isinstance(exc, KeyboardInterrupt):
        exc = Killed(2)
    if stopped_by is not None and not isinstance(exc, Killed):
        killed = Killed(stopped_by)
        record = error_record(killed)
        shown = exc.__cause__ if isinstance(exc, UserCodeError) and exc.__cause__ else exc
        record["message"] = redact(f"{killed.message}; the code it interrupted then raised "
                                   f"{type(shown).__name__}: {shown}".rstrip(": "))[:1000]
        record["traceback"] = _traceback_tail(shown)
        return Outcome("killed", killed.exit_code, record)
    if isinstance(exc, Killed):
        return Outcome("killed", exc.exit_code, error_record(exc))
    if isinstance(exc, SystemExit):
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if code == 0:
            return Outcome("completed", 0)
        failure = UserCodeError(f"the training code called sys.exit({exc.code!r})",
                                hint="see the job's log above for why it exited")
        record = error_record(failure)
        record["exit_code"] = code
        return Outcome("failed", code, record)
    record = error_record(exc)
    return Outcome("failed", record["exit_code"], record)


@dataclass(frozen=True)
class Ended:
    """How a run ended, as ``session.run_session`` decided and recorded it: the outcome, and what
    the training returned or what ended it (re-raised unchanged by ``unwrap``)."""

    outcome: Outcome
    result: Any = None
    error: BaseException | None = None

    def unwrap(self) -> Any:
        """The training's result, or whatever ended the run, raised as it was."""
        if self.error is not None:
            raise self.error
        return self.result
