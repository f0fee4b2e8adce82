"""Wait a bounded time for work nothing can interrupt (MLflow's and Google's clients mid-call).

The one bounded-thread helper: the work runs on a daemon thread that the caller stops waiting for
after ``seconds``; a late one goes on unobserved and dies with the process.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, TypeVar

T = TypeVar("T")


class StillRunning(TimeoutError):
    """The work had not finished when the wait ran out (it goes on, unobserved)."""


def call_within(seconds: float, work: Callable[[], T], name: str = "trainer-runtime-bounded") -> T:
    """``work()`` on a daemon thread, waited for at most ``seconds`` (at least 0.1).

    Returns:
        What ``work`` returned.
    Raises:
        Whatever ``work`` raised, unchanged; StillRunning when it has not finished in time.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc

    worker = threading.Thread(target=run, name=name, daemon=True)
    worker.start()
    worker.join(max(0.1, seconds))
    if "error" in outcome:
        raise outcome["error"]
    if "value" not in outcome:
        raise StillRunning(f"still running after {seconds:g}s")
    return outcome["value"]
