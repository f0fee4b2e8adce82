"""The spool's unsent part, shipped beside the status while the server is away.

On Vertex the local spool lives and dies with the container: a SIGKILL, an OOM
or a lost node during an outage would lose everything since the outage began.
Every ``spool_ship_interval`` seconds, while points wait for the server, the
shipper uploads what is not yet acknowledged (``mlflow_spool.jsonl``: the header
and every record after the acknowledged ``seq``; ``mlflow_spool.acked``; one
``mlflow_spool_artifact.<id>`` per pending artifact file) into the status
directory, and notes it in the status's ``tracking``. ``trainer-runtime replay
<status dir>`` lands it. While everything is on the server it uploads nothing.
The close ships the same way (``closing``).
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from typing import Any, Callable

from trainer_runtime.status.storage import TextDir
from trainer_runtime.tracking.spool import ACKED_FILE, SPOOL_FILE

log = logging.getLogger(__name__)

UPLOADED_SPOOL = "mlflow_spool.jsonl"
UPLOADED_ACKED = "mlflow_spool.acked"
ARTIFACT_PREFIX = "mlflow_spool_artifact."


def artifact_name(record_file: str) -> str:
    """The name a spooled artifact file (``artifacts/<id>``) is uploaded under, beside the status."""
    return ARTIFACT_PREFIX + os.path.basename(record_file)


def ship_unacked(spool_dir: str, artifact_dir: str, directory: TextDir, deadline: float | None = None,
                 already: set[str] | None = None) -> dict[str, Any]:
    """Upload the unacknowledged part of the spool in ``spool_dir`` (and its pending artifact files,
    but those in ``already``) into ``directory``. Returns what was shipped: the jsonl's URI, the
    acknowledged seq, the last seq and the count of pending records."""
    acked = _acked(os.path.join(spool_dir, ACKED_FILE))
    pending, last, files = 0, acked, []
    with tempfile.TemporaryDirectory(prefix="trainer-runtime-ship-") as work:
        part = os.path.join(work, SPOOL_FILE)
        with open(os.path.join(spool_dir, SPOOL_FILE), "rb") as src, open(part, "wb") as out:
            for line in src:
                seq = _seq(line)
                if seq is None:
                    if b'"spool"' in line:
                        out.write(line)  # the header
                    continue
                if seq <= acked:
                    continue
                if not line.endswith(b"\n"):
                    break  # torn: being written
                out.write(line)
                pending, last = pending + 1, seq
                if b'"k":"a"' in line:
                    files.append(json.loads(line)["file"])
        for file in files:
            local = os.path.join(artifact_dir, file)
            name = artifact_name(file)
            if (already is not None and name in already) or not os.path.exists(local):
                continue
            directory.write_file(name, local, deadline=deadline)
            if already is not None:
                already.add(name)
        acked_part = os.path.join(work, ACKED_FILE)
        with open(acked_part, "w", encoding="utf-8") as fh:
            fh.write(f"{acked}\n")
        uri = directory.write_file(UPLOADED_SPOOL, part, deadline=deadline)
        directory.write_file(UPLOADED_ACKED, acked_part, deadline=deadline)
    return {"spool_uri": uri, "acked": acked, "last_seq": last, "pending_records": pending}


def _seq(line: bytes) -> int | None:
    if not line.startswith(b'{"seq":'):
        try:
            entry = json.loads(line)
        except ValueError:
            return None
        return entry.get("seq") if isinstance(entry, dict) else None
    end = line.find(b",", 7)
    try:
        return int(line[7:end])
    except ValueError:
        return None


def _acked(path: str) -> int:
    try:
        with open(path, encoding="utf-8") as fh:
            return max([int(x) for x in fh.read().split() if x.isdigit()] or [0])
    except FileNotFoundError:
        return 0


class SpoolShipper:
    """Ships the run's unsent spool every ``interval`` seconds while the server is not taking it."""

    def __init__(self, logger: Any, reporter: Any, interval: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._reporter = reporter
        self._interval = interval
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shipped: set[str] = set()
        #: what the last ship uploaded (None: nothing shipped yet)
        self.last: dict[str, Any] | None = None

    def start(self) -> "SpoolShipper":
        if self._interval > 0 and self._reporter is not None:
            self._thread = threading.Thread(target=self._loop, name="trainer-runtime-ship", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.tick()
            except Exception as exc:  # the next tick tries again; training goes on
                log.error("could not ship the spool beside the status: %s", exc)

    def tick(self) -> bool:
        """Ship now if points wait for the server (or a shipped spool is out of date). True if it did."""
        logger = self._logger
        behind = logger.counts.pending > 0 and logger.in_outage() is not None
        if not behind and (self.last is None or self.last["pending_records"] == 0):
            return False
        logger.spool.sync()
        shipped = ship_unacked(logger.spool.directory, logger.artifact_dir, self._reporter.directory,
                               deadline=max(1.0, self._interval / 2), already=self._shipped)
        shipped["at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.last = shipped
        self._reporter.note_tracking({
            "state": "ok", "spool_dir": logger.spool.directory, "shipped": shipped,
            "replay_command": f"trainer-runtime replay {self._reporter.directory.describe()}"})
        if shipped["pending_records"]:
            log.warning("MLflow unreachable: %d records not on the server shipped to %s", shipped["pending_records"],
                        shipped["spool_uri"])
        return True
