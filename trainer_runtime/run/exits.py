"""The one place a process leaves because of a run: ``exit_with(outcome)``.

Every wiring ends here with the exit code ``outcome.decide`` chose: the standalone
command (the process ends with its run), TFX's Vertex runner (the process exists for one
component), and the signal path (after a SIGTERM/SIGINT the run is closed, and the
process must be gone before the platform's SIGKILL).
"""
from __future__ import annotations

import logging
import os
import sys
import threading
from typing import NoReturn

from trainer_runtime.run.outcome import Outcome

log = logging.getLogger(__name__)

#: seconds the interpreter's teardown may take once a standalone run is closed and decided
TEARDOWN = 0.5


def exit_with(outcome: Outcome, *, at_once: bool = False, teardown: float | None = None) -> NoReturn:
    """Leave the process with ``outcome.exit_code``.

    Args:
        at_once: skip the interpreter's teardown (flush the logs and stdio, then ``os._exit``):
            after a preemption signal, once the run and its status are closed. Measured under
            the fault suite: TF, Beam and TFX's launcher took 5-15 s more to exit on a loaded
            2-core machine, past the grace.
        teardown: let the teardown run (atexit handlers, buffered output) for at most this many
            seconds, then leave at once with the same code: for a process that ends with its run
            (the standalone command), never inside a caller's process. Measured: TF's and
            MLflow's teardown took 6-8 s after a closed run, and a user's non-daemon thread or
            atexit handler held it indefinitely.

    Raises:
        SystemExit: with the outcome's exit code, unless ``at_once``.
    """
    code = outcome.exit_code
    if at_once:
        _leave(code)
    if teardown is not None:
        watchdog = threading.Timer(teardown, _leave, args=(code,))
        watchdog.daemon = True
        watchdog.start()
    raise SystemExit(code)


def _leave(code: int) -> NoReturn:
    log.info("exiting with %s; the run and its status are closed", code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed or broken stream must not keep the process alive
            pass
    os._exit(code)
