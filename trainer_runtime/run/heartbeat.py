"""During training, the status carries progress at most every ``heartbeat_interval`` seconds.

A trainer killed without a chance to write its end (SIGKILL, OOM, a lost node)
then shows as a ``training`` status whose ``progress.heartbeat_at`` is stale;
``trainer-runtime status`` says so.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, write: Callable[[dict[str, Any]], bool], progress: Callable[[], dict[str, Any]],
                 interval: float) -> None:
        self._write = write
        self._progress = progress
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="trainer-runtime-heartbeat", daemon=True)

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating; never waits for a write in flight (the terminal write is ordered after it)."""
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                if not self._write(self._progress()):
                    return
            except Exception:  # a heartbeat must never take the run down
                log.exception("heartbeat not recorded")
