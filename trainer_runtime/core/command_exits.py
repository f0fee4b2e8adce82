"""Exit codes of the commands that look at a run rather than run one (``status``, ``replay``).

Numbers of their own: none is a run's exit code (``errors.EXIT_CODES``, or 128 + a signal), so a
script that runs both never reads "stale" as "your module could not be loaded". The README's
tables are generated from these.
"""
from __future__ import annotations

COMPLETED = 0          # status: the run completed; replay: everything, and the run's end, is on the server
FAILED = 1             # status: the run failed or was killed
PENDING = 1            # replay: still pending (the server did not take it in time)
RUNNING = 5            # status: not finished and fresh, or no heartbeat to tell
STALE = 6              # status: not finished, and no heartbeat for more than 2 x its interval
NOT_FOUND = 7          # status: no readable status where it looked; replay: no spool found

#: command -> exit code -> meaning; the README's tables are generated from this.
COMMAND_EXIT_CODES: dict[str, dict[int, str]] = {
    "status": {
        COMPLETED: "the run completed (tracking may be degraded: the output says so)",
        FAILED: "the run failed or was killed",
        RUNNING: "not finished, and its heartbeat is fresh (or it has none to tell)",
        STALE: "not finished, and no heartbeat for more than twice its interval: probably killed",
        NOT_FOUND: "no readable status where it looked (it says where)",
    },
    "replay": {
        COMPLETED: "everything the spool held, and the run's end, is on the server",
        PENDING: "still pending: the server did not take it within `--timeout`",
        NOT_FOUND: "no spool found where it looked",
    },
}
