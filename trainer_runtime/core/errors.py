"""One exception root for everything the runtime reports, split by whose fault it is.

``UserFault``: the user's config or code; fixing it is on them.
``PlatformFault``: the tracking server, auth, storage, or the runtime itself.

Every class carries a ``hint`` (the fix) and a documented ``exit_code``; the
table in README.md ("Exit codes") is generated from ``EXIT_CODES`` below.
"""
from __future__ import annotations


class RuntimeFailure(Exception):
    """Root of every error the runtime raises on purpose."""

    exit_code = 70
    fault = "platform"
    retryable = False  # True: a later try may succeed (the preflight's retries read it)

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.hint}" if self.hint else self.message


class UserFault(RuntimeFailure):
    fault = "user"
    exit_code = 2


class ConfigError(UserFault, ValueError):
    """Bad or missing configuration, found before anything else happens."""

    exit_code = 2


class UserCodeLoadError(UserFault, ImportError):
    """The user's module or function could not be found or imported."""

    exit_code = 3


class UserCodeError(UserFault):
    """The user's training function raised. The original exception is ``__cause__``."""

    exit_code = 4


class PlatformFault(RuntimeFailure):
    fault = "platform"
    exit_code = 10


class TrackingUnavailableError(PlatformFault):
    """The tracking server did not become healthy within the preflight budget."""

    exit_code = 10
    retryable = True


class TrackingAuthError(PlatformFault):
    """No credential could be had, or the server refused it (401/403)."""

    exit_code = 11


class HostHeaderError(PlatformFault):
    """MLflow's own Host-header check refused the request (403 "Invalid Host header")."""

    exit_code = 12


class TrackingEndpointError(PlatformFault):
    """404 from the server: the tracking URI has the wrong host or path prefix."""

    exit_code = 13


class TrackingApiError(PlatformFault):
    """The MLflow API answered with an error the runtime cannot work around."""

    exit_code = 14


class StatusWriteError(PlatformFault):
    """The status destination could not be written."""

    exit_code = 15


class Killed(SystemExit):
    """The process was told to stop (SIGTERM/SIGINT), e.g. a preemption or a cancelled job.

    A ``SystemExit`` (so a ``BaseException``): no ``except Exception`` in user or
    library code can swallow a preemption, and a process that lets it escape
    exits ``128 + signum`` whichever entry point runs it (absl, runpy, TFX's runners).
    """

    fault = "platform"
    retryable = False

    def __init__(self, signum: int) -> None:
        import signal

        name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        super().__init__(self.exit_code)
        self.signum = signum
        self.message = f"stopped by {name}"
        self.hint = "the job was cancelled or preempted; rerun it if that was not intended"

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.hint}"


class InternalError(PlatformFault):
    """A bug in the runtime: anything unexpected that escaped. Please report it."""

    exit_code = 70


#: exit code -> (class, meaning); the docs table is generated from this.
EXIT_CODES: dict[int, tuple[str, str]] = {
    0: ("-", "success: training finished and the run is FINISHED"),
    ConfigError.exit_code: ("ConfigError", "bad or missing configuration (your fault)"),
    UserCodeLoadError.exit_code: ("UserCodeLoadError", "your module or function could not be loaded"),
    UserCodeError.exit_code: ("UserCodeError", "your training function raised"),
    TrackingUnavailableError.exit_code: ("TrackingUnavailableError", "tracking server not healthy within the budget"),
    TrackingAuthError.exit_code: ("TrackingAuthError", "no credential, or the server refused it (401/403)"),
    HostHeaderError.exit_code: ("HostHeaderError", "the server's --allowed-hosts refuses our Host header"),
    TrackingEndpointError.exit_code: ("TrackingEndpointError", "404: wrong tracking URI or path prefix"),
    TrackingApiError.exit_code: ("TrackingApiError", "the MLflow API refused a call"),
    StatusWriteError.exit_code: ("StatusWriteError", "the status destination is not writable"),
    InternalError.exit_code: ("InternalError", "a bug in the runtime"),
    130: ("Killed", "stopped by SIGINT"),
    143: ("Killed", "stopped by SIGTERM (cancelled or preempted)"),
}
