"""The run's durable spool: every accepted point, param and tag, on local disk before it is sent.

A spool is a directory holding two append-only files:

``spool.jsonl``
    a header line (run id, tracking URI, experiment), then one record per line
    in the order the runtime accepted them: ``{"seq": n, "k": "m", "key", "value",
    "ts", "step"}`` for a metric point, ``"k": "p"``/``"t"`` with ``key``/``value``
    for a param/tag, and ``"k": "end"`` with ``status``/``end_time`` for the run's
    terminal status.
``spool.acked``
    one number per line, the last one wins: every record up to that ``seq`` is
    on the server (the sender acknowledges in order).
``artifacts/``
    a copy of each file user code logged as an artifact (``"k": "a"`` records name
    it), taken at the call so the user may delete the original; removed once sent.

Records also carry ``"k": "a"`` (an artifact: ``uri`` root, ``path`` inside it,
``file`` in this directory, ``bytes``) and ``"k": "i"`` (dataset inputs, as
MLflow's REST ``log-inputs`` body takes them).

Each batch is written and flushed to the OS at once, so a killed process loses
nothing it had written; ``fsync`` runs at most every ``sync_interval`` seconds
(what a lost machine may lose). ``replay`` sends what is after ``acked``.
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

SPOOL_FILE = "spool.jsonl"
ACKED_FILE = "spool.acked"
FORMAT = 1


class Spool:
    """Appends records and acknowledgements; thread-safe (one writer, one sender)."""

    def __init__(self, directory: str, header: dict[str, Any], *, sync_interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self._lock = threading.Lock()
        self._clock = clock
        self._sync_interval = sync_interval
        self._last_sync = clock()
        path = os.path.join(self.directory, SPOOL_FILE)
        existing = parse(_read(path), _read(os.path.join(self.directory, ACKED_FILE)))
        self._records = open(path, "ab")
        self._acked = open(os.path.join(self.directory, ACKED_FILE), "a", encoding="utf-8")
        if existing.header is None:
            self._records.write((json.dumps({"spool": FORMAT, **header}) + "\n").encode("utf-8"))
            self._records.flush()
        #: bytes in spool.jsonl: where the next record starts (the sender reads back from offsets)
        self.size = self._records.tell()
        self.seq = existing.records[-1]["seq"] if existing.records else 0
        self.acked = existing.acked
        #: records a previous process spooled and never got acknowledged (a reopened spool).
        self.resumed = existing.pending()
        self.header = existing.header or {"spool": FORMAT, **header}
        self._dirty = False

    @property
    def path(self) -> str:
        return os.path.join(self.directory, SPOOL_FILE)

    def append(self, records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Give each record the next ``seq`` and write them; returns them with their seq.
        ``self.size`` before the call is where the first of them starts in the file."""
        written = []
        with self._lock:
            lines = []
            for record in records:
                self.seq += 1
                record = {"seq": self.seq, **record}
                written.append(record)
                lines.append(_encode(record))
            if lines:
                data = ("\n".join(lines) + "\n").encode("utf-8")
                self._records.write(data)
                self._records.flush()
                self.size += len(data)
                self._dirty = True
            self._maybe_sync()
        return written

    def ack(self, seq: int) -> None:
        """Everything up to ``seq`` is on the server."""
        with self._lock:
            if seq <= self.acked:
                return
            self.acked = seq
            self._acked.write(f"{seq}\n")
            self._acked.flush()
            self._dirty = True
            self._maybe_sync()

    def sync(self) -> None:
        with self._lock:
            self._sync()

    def close(self) -> None:
        with self._lock:
            if self._records.closed:
                return
            self._sync()
            self._records.close()
            self._acked.close()

    def _maybe_sync(self) -> None:
        if self._dirty and self._clock() - self._last_sync >= self._sync_interval:
            self._sync()

    def _sync(self) -> None:
        if self._records.closed or not self._dirty:
            return
        os.fsync(self._records.fileno())
        os.fsync(self._acked.fileno())
        self._dirty = False
        self._last_sync = self._clock()


def read_records(path: str, start: int, end: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Up to ``limit`` records of the spool file at ``path`` between byte offsets ``start`` and
    ``end`` (both at line starts); returns them and the offset after the last one read."""
    records: list[dict[str, Any]] = []
    offset = start
    with open(path, "rb") as fh:
        fh.seek(start)
        while offset < end and len(records) < limit:
            line = fh.readline()
            if not line:
                break
            offset += len(line)
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if "seq" in entry:
                records.append(entry)
    return records, offset


def _encode(record: dict[str, Any]) -> str:
    """One spool line. A metric point, the bulk of a spool, skips the generic JSON encoder (here
    6.7 µs a point against 1.3 µs): its key is a name MLflow accepts, so it needs no escaping."""
    if record["k"] == "m":
        key, value = record["key"], record["value"]
        if '"' not in key and "\\" not in key and key.isprintable() and math.isfinite(value):
            return '{"seq":%d,"k":"m","key":"%s","value":%r,"ts":%d,"step":%d}' % (
                record["seq"], key, value, record["ts"], record["step"])
    return json.dumps(record, separators=(",", ":"))


@dataclass
class SpoolContent:
    header: dict[str, Any] | None
    records: list[dict[str, Any]]
    acked: int

    def pending(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["seq"] > self.acked]


def parse(spool_text: str, acked_text: str = "") -> SpoolContent:
    """Read a spool's two files. A torn last line (the process died mid-write) is ignored."""
    header, records = None, []
    for line in spool_text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if "spool" in entry and "seq" not in entry:
            header = entry
        elif "seq" in entry:
            records.append(entry)
    acked = 0
    for line in acked_text.split():
        try:
            acked = max(acked, int(line))
        except ValueError:
            continue
    return SpoolContent(header, records, acked)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        return ""
