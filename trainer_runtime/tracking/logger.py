"""Non-blocking MLflow logging: training thread -> queue -> spool on disk -> server.

The training thread's share is one ``deque.append`` of the raw values it was
given: no lock, no thread woken (a wake-up per step costs the training thread
more than the append, in GIL hand-overs). Two background threads do the rest:

- the *writer* wakes every ``WRITER_INTERVAL`` (and at once on close), takes
  everything queued, converts and cleans it (tensors to floats, names MLflow
  accepts, secrets out, long params cut), appends it to the run's
  :class:`~trainer_runtime.tracking.spool.Spool` in one write and hands it to the sender;
- the *sender* sends spooled records in order, coalesced into ``log_batch``
  requests up to MLflow's limits, each request tried once on the runtime's own
  short timeout (:mod:`trainer_runtime.tracking.rest`), and retries on its own backoff,
  which ``close`` interrupts. Nothing waits inside MLflow's hidden urllib3
  retries; an outage of any length loses nothing, because the spool keeps it.

Accounting has one owner, :class:`Counts`: every accepted point is sent,
pending (in the spool) or rejected with a reason, and
``accepted == sent + pending + sum(rejected)`` at every moment.
"""
from __future__ import annotations

import logging
import math
import os
import posixpath
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from trainer_runtime.core.config import FIELD_BY_NAME
from trainer_runtime.core.redact import is_secret_key, redact
from trainer_runtime.core.retry import Backoff, Deadline
from trainer_runtime.tracking.rest import RestError
from trainer_runtime.tracking.spool import Spool, read_records

log = logging.getLogger(__name__)

#: MLflow's log_batch limits per request.
MAX_METRICS, MAX_PARAMS, MAX_TAGS, MAX_ENTITIES = 1000, 100, 100, 1000
MAX_PARAM_CHARS, MAX_TAG_CHARS = 6000, 8000
_BAD_NAME_CHARS = re.compile(r"[^\w\-. :/]")
#: seconds between the writer's passes over what training queued (close wakes it at once)
WRITER_INTERVAL = 0.05
#: bytes of RAM one pending record takes in the sender's window (measured: ~550 with its share of the deque; rounded up)
RECORD_BYTES = 700
#: records read back from the spool file at a time once the window has drained
REFILL_RECORDS = 5_000
#: an artifact upload may take send_timeout plus its size at this pace (bytes per second)
ARTIFACT_BYTES_PER_SECOND = 2_000_000
#: kinds of record that go to the server alone, each in a request of its own
_ALONE = ("end", "a", "i")


def window_records(megabytes: float) -> int:
    """How many pending records the sender keeps in RAM for a window of ``megabytes``."""
    return max(1_000, int(megabytes * 1_000_000 // RECORD_BYTES))


def sanitize_name(name: str) -> str:
    """A name MLflow accepts: [\\w-. :/], no leading '/', no '..'."""
    clean = _BAD_NAME_CHARS.sub("_", str(name)).lstrip("/")
    while ".." in clean:
        clean = clean.replace("..", "_")
    return clean or "_"


class Counts:
    """The one owner of the logger's accounting. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.accepted = self.sent = self.pending = self.non_finite = self.send_failures = 0
        self.rejected: dict[str, int] = {}
        #: first few rejected names and why (for people), and renamed/truncated names.
        self.rejected_names: dict[str, str] = {}
        self.renamed: dict[str, str] = {}
        self.truncated: dict[str, int] = {}
        self.outage_seconds = 0.0
        #: when the outage in progress began (monotonic), so a run that ends inside one reports it
        self.outage_since: float | None = None
        self.artifacts = {"accepted": 0, "sent": 0, "bytes_sent": 0}

    def outage_began(self, now: float) -> None:
        with self._lock:
            if self.outage_since is None:
                self.outage_since = now

    def outage_ended(self, now: float) -> float:
        """Close the outage in progress; returns its length in seconds (0 when there was none)."""
        with self._lock:
            if self.outage_since is None:
                return 0.0
            seconds, self.outage_since = now - self.outage_since, None
            self.outage_seconds += seconds
            return seconds

    def accept(self, n: int) -> None:
        with self._lock:
            self.accepted += n

    def reject(self, reason: str, n: int = 1, name: str | None = None, detail: str = "",
               was_pending: bool = False) -> bool:
        """Count ``n`` rejected points; True the first time ``name`` is rejected."""
        with self._lock:
            self.rejected[reason] = self.rejected.get(reason, 0) + n
            if was_pending:
                self.pending -= n
            if name is not None and name not in self.rejected_names and len(self.rejected_names) < 50:
                self.rejected_names[name] = f"{reason}: {detail}" if detail else reason
                return True
            return False

    def drop(self, reason: str, n: int = 1, name: str | None = None, detail: str = "") -> bool:
        """``n`` points accepted and rejected at once (never spooled); True the first time ``name`` is."""
        self.accept(n)
        return self.reject(reason, n, name=name, detail=detail)

    def spooled(self, n: int) -> None:
        with self._lock:
            self.pending += n

    def delivered(self, n: int) -> None:
        with self._lock:
            self.sent += n
            self.pending -= n

    def non_finite_seen(self) -> None:
        with self._lock:
            self.non_finite += 1

    def failure(self) -> None:
        with self._lock:
            self.send_failures += 1

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            ongoing = time.monotonic() - self.outage_since if self.outage_since is not None else 0.0
            return {"accepted": self.accepted, "sent": self.sent, "pending": self.pending,
                    "rejected": dict(self.rejected), "rejected_names": dict(self.rejected_names),
                    "renamed": dict(self.renamed), "truncated": dict(self.truncated),
                    "non_finite": self.non_finite, "send_failures": self.send_failures,
                    "outage_seconds": round(self.outage_seconds + ongoing, 1),
                    "artifacts": dict(self.artifacts)}


@dataclass
class LoggerReport:
    """What ``close`` knows: the counts, and whether the run's end reached the server."""

    counts: dict[str, Any]
    run_closed: bool = False
    spool_dir: str | None = None
    unsent: list[str] = field(default_factory=list)

    @property
    def pending(self) -> int:
        return int(self.counts["pending"])

    def as_dict(self) -> dict[str, Any]:
        return dict(self.counts)


_STOP = ("stop",)


def to_float(value: Any) -> float:
    """A logged value (a Python or numpy number, a scalar tensor) as a float.

    Raises:
        TypeError, ValueError: it is not a number.
    """
    if hasattr(value, "numpy"):
        value = value.numpy()
    return float(value)


class MetricsLogger:
    """The run's background logger. ``log_*`` never block; ``close`` is bounded by its deadline."""

    # the defaults are the config's (``runs.build_logger`` passes a run's own)
    def __init__(self, rest: Any, run_id: str, spool: Spool, *,
                 max_queue: int = FIELD_BY_NAME["queue_size"].default,
                 send_timeout: float = FIELD_BY_NAME["send_timeout"].default,
                 linger: float = 0.2, backoff: Backoff | None = None,
                 clock: Callable[[], float] = time.time, writer_interval: float = WRITER_INTERVAL,
                 memory_window: int = window_records(FIELD_BY_NAME["spool_memory_mb"].default),
                 artifact_dir: str | None = None) -> None:
        self._rest = rest
        self._run_id = run_id
        self.spool = spool
        # deque.append/popleft are atomic: the training thread appends, the writer alone pops.
        self._inbox: deque = deque()
        self._max_queue = max_queue
        self._writer_interval = writer_interval
        self._wake_writer = threading.Event()
        self._writing = 0                   # entries the writer took but has not spooled yet
        self._send_timeout = send_timeout
        self._linger = linger
        # capped at 2 s: a try against a refused port is cheap, and every second of not noticing that
        # the server is back is a second of backlog the end of the run may have to send
        self._backoff = backoff or Backoff(initial=0.5, factor=2.0, maximum=2.0, jitter=0.2)
        self._clock = clock
        self.counts = Counts()
        self._params_sent: dict[str, str] = {}
        self._names: dict[str, str] = {}   # name -> the name MLflow accepts (a cache: every step repeats them)
        self._pending: deque = deque()      # spooled records not yet on the server, in order (a window)
        self._window = memory_window        # at most this many of them in RAM; the rest on disk only
        self._overflow: int | None = None   # spool file offset of the first pending record not in RAM
        #: where an artifact record's ``file`` is (the spool's own directory, or replay's copy)
        self.artifact_dir = artifact_dir or spool.directory
        self._cond = threading.Condition()
        self._wake = threading.Event()      # interrupts the sender's backoff wait
        self._closing = False
        self._stop_sending = False
        self._end_seq: int | None = None
        self._gave_up: str | None = None
        self._writer: threading.Thread | None = None
        self._sender: threading.Thread | None = None
        if spool.resumed:  # a reopened spool: what it holds is sent first, in order
            points = sum(1 for r in spool.resumed if r["k"] != "end")
            self.counts.accept(points)
            self.counts.spooled(points)
            self._pending.extend(spool.resumed)
            self._end_seq = next((r["seq"] for r in spool.resumed if r["k"] == "end"), None)

    # --- training-thread side: one put, never blocks ------------------------------
    def log_metrics(self, metrics: Mapping[str, Any], step: int, prefix: str = "") -> None:
        """Queue ``metrics`` (floats, numpy or tensor scalars) at ``step``; names get ``prefix``.
        A shallow copy is queued: the caller may reuse its mapping."""
        self._put(("m", dict(metrics), step, int(self._clock() * 1000), prefix))

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._put(("p", dict(params)))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._put(("t", dict(tags)))

    def log_user(self, metrics: list[tuple[str, Any, int, int]], params: Mapping[str, Any] | None = None,
                 tags: Mapping[str, Any] | None = None) -> None:
        """What user code logged through MLflow's API: ``metrics`` as (key, value, timestamp ms, step),
        each with its own step and time. The caller hands its lists over (no copy is made)."""
        self._put(("u", metrics, params or {}, tags or {}), len(metrics) + len(params or ()) + len(tags or ()))

    def log_artifact_file(self, file: str, uri: str, path: str, name: str, size: int) -> None:
        """An artifact already copied to ``file`` (relative to :attr:`artifact_dir`), for
        ``<uri>/<path>/<name>``."""
        self._put(("a", {"k": "a", "uri": uri, "path": path, "name": name, "file": file, "bytes": size}), 1)

    def log_inputs(self, datasets: list[dict[str, Any]]) -> None:
        """Dataset inputs, as the body of MLflow's REST ``log-inputs`` carries them."""
        self._put(("i", datasets), 1)

    def in_outage(self) -> float | None:
        """Seconds since the server last stopped answering the sender; None while it answers."""
        since = self.counts.outage_since
        return None if since is None else time.monotonic() - since

    def _put(self, item: tuple, n: int | None = None) -> None:
        if len(self._inbox) < self._max_queue:
            self._inbox.append(item)
        else:
            n = len(item[1]) if n is None else n
            if self.counts.drop("queue_full", n, name="<queue>",
                                  detail="the local queue to the spool was full"):
                log.warning("the logging queue is full (the spool's disk is stuck?); dropping new "
                            "points instead of blocking training; they are counted")

    # --- lifecycle ------------------------------------------------------------------
    def start(self) -> "MetricsLogger":
        self._writer = threading.Thread(target=self._write_loop, name="trainer-runtime-spool", daemon=True)
        self._sender = threading.Thread(target=self._send_loop, name="trainer-runtime-sender", daemon=True)
        self._writer.start()
        self._sender.start()
        return self

    def progress(self) -> dict[str, Any]:
        counts = self.counts.as_dict()
        return {"points_accepted": counts["accepted"], "points_sent": counts["sent"],
                "points_pending": counts["pending"] + len(self._inbox)}

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued so far is on the server (or timeout). True if it is."""
        deadline = time.monotonic() + timeout
        self._wake_writer.set()
        while time.monotonic() < deadline:
            if not self._inbox and not self._writing:
                with self._cond:
                    if not self._pending and self._overflow is None:
                        return True
            time.sleep(0.02)
        return False

    def close(self, deadline: Deadline, end_status: str | None = None) -> LoggerReport:
        """Spool what is queued, append the run's end (``end_status``: FINISHED/FAILED/KILLED),
        and send until everything is on the server or ``deadline`` runs out. Never blocks longer;
        what is left stays in the spool, counted as pending."""
        if self._writer is None:
            return LoggerReport(self.counts.as_dict(), spool_dir=self.spool.directory)
        self._closing = True
        self._inbox.append(("end", end_status) if end_status else _STOP)  # past the bound: it must go in
        self._wake_writer.set()
        self._writer.join(timeout=max(0.1, deadline.remaining()))
        self._wake.set()
        with self._cond:
            self._cond.notify_all()
            while (self._pending or self._overflow is not None or self._writer.is_alive()) \
                    and deadline.remaining() > 0 and self._gave_up is None:
                self._cond.wait(timeout=min(0.05, deadline.remaining()))
            unsent = len(self._pending) + (self._overflow is not None)
            self._stop_sending = True
            self._cond.notify_all()
        self._wake.set()
        try:
            self.spool.sync()
        except OSError as exc:
            log.error("could not sync the spool %s: %s", self.spool.directory, exc)
        run_closed = self._end_seq is not None and self.spool.acked >= self._end_seq
        counts = self.counts.as_dict()
        if unsent or counts["pending"]:
            log.warning("%s points not on the server when the close budget ran out; they are in the "
                        "spool %s", counts["pending"], self.spool.directory)
        return LoggerReport(counts, run_closed=run_closed, spool_dir=self.spool.directory)

    # --- writer: queue -> clean records -> spool -> sender ----------------------------
    def _write_loop(self) -> None:
        while True:
            if not self._inbox:
                self._wake_writer.wait(self._writer_interval)
                self._wake_writer.clear()
                continue
            items = []
            self._writing = 1
            while self._inbox and len(items) < 10_000:
                items.append(self._inbox.popleft())
            self._writing = len(items)
            last = items[-1][0]
            try:
                self._spool_items(items)
            except Exception:  # a bug here must not kill the thread and leave close waiting
                log.exception("could not spool %s logging entries", len(items))
            finally:
                self._writing = 0
            if last in ("stop", "end"):
                return

    def _spool_items(self, items: list[tuple]) -> None:
        records: list[dict[str, Any]] = []
        for item in items:
            kind = item[0]
            if kind == "m":
                self._metric_records(item[1], item[2], item[3], item[4], records)
            elif kind == "p":
                self._param_records(item[1], records)
            elif kind == "t":
                self._tag_records(item[1], records)
            elif kind == "u":
                self._user_records(item[1], item[2], item[3], records)
            elif kind == "a":
                self.counts.accept(1)
                self.counts.artifacts["accepted"] += 1
                records.append(item[1])
            elif kind == "i":
                self.counts.accept(1)
                records.append({"k": "i", "datasets": item[1]})
            elif kind == "end":
                records.append({"k": "end", "status": item[1], "end_time": int(self._clock() * 1000)})
        if not records:
            return
        with self._cond:  # the sender reads the file back from offsets: appends happen under the lock
            start = self.spool.size
            written = self.spool.append(records)
            points = sum(1 for r in written if r["k"] != "end")
            self.counts.spooled(points)
            for record in written:
                if record["k"] == "end":
                    self._end_seq = record["seq"]
            if self._overflow is None and len(self._pending) + len(written) <= self._window:
                self._pending.extend(written)
            elif self._overflow is None:  # the window is full: these stay on disk until it drains
                self._overflow = start
            self._cond.notify_all()

    def _user_records(self, metrics: list, params: Mapping[str, Any], tags: Mapping[str, Any], out: list) -> None:
        if metrics:
            self.counts.accept(len(metrics))
            for key, raw, ts, step in metrics:
                self._metric_record(str(key), raw, int(ts), int(step or 0), out)
        if params:
            self._param_records(params, out)
        if tags:
            self._tag_records(tags, out)

    def _metric_records(self, values: Mapping[str, Any], step: Any, ts: int, prefix: str, out: list) -> None:
        # ``values`` is already the caller's copy (the callback's dict(logs)) or its own mapping
        self.counts.accept(len(values))
        step = int(step)
        for name, raw in values.items():
            self._metric_record(prefix + str(name), raw, ts, step, out)

    def _metric_record(self, name: str, raw: Any, ts: int, step: int, out: list) -> None:
        """One accepted point as a spool record, or counted as not a number."""
        try:
            number = to_float(raw)
        except (TypeError, ValueError):
            if self.counts.reject("not_a_number", name=name, detail=type(raw).__name__):
                log.warning("metric %r dropped: not a number (%s); reported once", name, type(raw).__name__)
            return
        if not math.isfinite(number):
            self.counts.non_finite_seen()
        out.append({"k": "m", "key": self._renamed(name), "value": number, "ts": ts, "step": step})

    def _param_records(self, params: Mapping[str, Any], out: list) -> None:
        self.counts.accept(len(params))
        for name, value in params.items():
            name = str(name)
            if is_secret_key(name):
                if self.counts.reject("secret_key", name=name):
                    log.warning("param %r not logged: its name says it is a secret", name)
                continue
            key, text = self._renamed(name), redact(str(value))
            if len(text) > MAX_PARAM_CHARS:
                self.counts.truncated[key] = len(text)
                text = text[:MAX_PARAM_CHARS - 1] + "…"
            if self._params_sent.get(key) == text:
                self.counts.reject("duplicate_param", name=None)
                continue
            self._params_sent[key] = text
            out.append({"k": "p", "key": key, "value": text})

    def _tag_records(self, tags: Mapping[str, Any], out: list) -> None:
        self.counts.accept(len(tags))
        for name, value in tags.items():
            text = redact(str(value))
            if len(text) > MAX_TAG_CHARS:
                self.counts.truncated[str(name)] = len(text)
                text = text[:MAX_TAG_CHARS - 1] + "…"
            out.append({"k": "t", "key": self._renamed(str(name)), "value": text})

    def _renamed(self, name: str) -> str:
        clean = self._names.get(name)
        if clean is not None:
            return clean
        clean = self._names[name] = sanitize_name(name)
        if clean != name and name not in self.counts.renamed:
            self.counts.renamed[name] = clean
            log.warning("%r renamed to %r (MLflow does not accept that name)", name, clean)
        return clean

    # --- sender: spooled records -> server, in order ---------------------------------
    def _send_loop(self) -> None:
        delays = self._backoff.delays()
        while True:
            with self._cond:
                while not self._pending and not self._stop_sending:
                    if self._overflow is not None:
                        self._refill()
                        continue
                    self._cond.wait()
                if self._stop_sending:
                    return
                # Coalesce: one request for many steps, lingering a bounded moment (never at close).
                linger_until = time.monotonic() + self._linger
                while not self._closing and not self._stop_sending and len(self._pending) < MAX_METRICS \
                        and self._overflow is None and time.monotonic() < linger_until:
                    self._cond.wait(timeout=linger_until - time.monotonic())
                if self._stop_sending:
                    return
                chunk = self._take_chunk()
            try:
                self._send(chunk)
            except RestError as exc:
                if not exc.retryable:
                    self._give_up(exc)
                    return
                self._outage(exc)
                delay = 0.2 if self._closing else next(delays)
                self._wake.clear()
                if not self._closing:
                    self._wake.wait(delay)
                elif not self._stop_sending:
                    time.sleep(delay)
                continue
            except Exception:  # a bug must not stop the sender: keep the records, try again later
                log.exception("unexpected error sending %s records; they stay in the spool", len(chunk))
                time.sleep(1.0)
                continue
            seconds = self.counts.outage_ended(time.monotonic())
            if seconds:
                log.warning("MLflow reachable again after %.1fs; sending the spooled points", seconds)
            delays = self._backoff.delays()

    def _refill(self) -> None:
        """Under the lock: the next pending records from the spool file, once the window has drained."""
        records, offset = read_records(self.spool.path, self._overflow or 0, self.spool.size,
                                       min(REFILL_RECORDS, self._window))
        self._pending.extend(records)
        self._overflow = offset if offset < self.spool.size and records else None

    def _take_chunk(self) -> list[dict[str, Any]]:
        """The records at the head that fit one request (an ``end`` record goes alone)."""
        chunk: list[dict[str, Any]] = []
        n = {"m": 0, "p": 0, "t": 0}
        limits = {"m": MAX_METRICS, "p": MAX_PARAMS, "t": MAX_TAGS}
        for record in self._pending:
            kind = record["k"]
            if kind in _ALONE:
                if not chunk:
                    chunk.append(record)
                break
            if n[kind] >= limits[kind] or len(chunk) >= MAX_ENTITIES:
                break
            n[kind] += 1
            chunk.append(record)
        return chunk

    def _send(self, chunk: list[dict[str, Any]]) -> None:
        timeout = self._send_timeout
        kind = chunk[0]["k"]
        if kind == "end":
            self._rest.update_run(self._run_id, chunk[0]["status"], chunk[0]["end_time"], timeout)
            self._done(chunk, delivered=0)
            return
        if kind == "a":
            self._send_artifact(chunk[0])
            return
        if kind == "i":
            try:
                self._rest.log_inputs(self._run_id, chunk[0]["datasets"], timeout)
            except RestError as exc:
                if exc.retryable:
                    raise
                self._refused(chunk[0], "inputs", "server_rejected", exc)
                return
            self._done(chunk, delivered=1)
            return
        try:
            self._post(chunk, timeout)
            self._done(chunk, delivered=len(chunk))
        except RestError as exc:
            if not exc.rejected:
                raise
            if len(chunk) == 1:
                record = chunk[0]
                self.counts.reject("server_rejected", name=record["key"], detail=str(exc), was_pending=True)
                log.warning("the server rejected %r: %s", record["key"], exc)
                self._done(chunk, delivered=0)
                return
            for record in chunk:  # find the bad one(s); the rest must land
                self._send([record])

    def _send_artifact(self, record: dict[str, Any]) -> None:
        local = os.path.join(self.artifact_dir, record["file"])
        name = posixpath.join(record["path"], record["name"]) if record["path"] else record["name"]
        if not os.path.isfile(local):
            self._refused(record, name, "artifact_missing", f"no copy at {local}")
            return
        timeout = self._send_timeout + record["bytes"] / ARTIFACT_BYTES_PER_SECOND
        try:
            self._rest.put_artifact_file(record["uri"], name, local, timeout)
        except RestError as exc:
            if exc.retryable:
                raise
            self._refused(record, name, "artifact_refused", exc)
            return
        self.counts.artifacts["sent"] += 1
        self.counts.artifacts["bytes_sent"] += record["bytes"]
        self._done([record], delivered=1)
        try:
            os.remove(local)
        except OSError:
            pass

    def _refused(self, record: dict[str, Any], name: str, reason: str, detail: Any) -> None:
        """The server refused ``record`` for good: count it and go on with the rest."""
        self.counts.reject(reason, name=name, detail=str(detail), was_pending=True)
        log.warning("%s not logged (%s): %s", name, reason, detail)
        self._done([record], delivered=0)

    def _post(self, chunk: list[dict[str, Any]], timeout: float) -> None:
        metrics = [{"key": r["key"], "value": r["value"], "timestamp": r["ts"], "step": r["step"]}
                   for r in chunk if r["k"] == "m"]
        params = [{"key": r["key"], "value": r["value"]} for r in chunk if r["k"] == "p"]
        tags = [{"key": r["key"], "value": r["value"]} for r in chunk if r["k"] == "t"]
        self._rest.log_batch(self._run_id, metrics, params, tags, timeout)

    def _done(self, chunk: list[dict[str, Any]], delivered: int) -> None:
        with self._cond:
            for _ in chunk:
                self._pending.popleft()
            self._cond.notify_all()
        if delivered:
            self.counts.delivered(delivered)
        self.spool.ack(chunk[-1]["seq"])

    def _outage(self, exc: RestError) -> None:
        self.counts.failure()
        if self.counts.outage_since is None and not self._stop_sending:
            self.counts.outage_began(time.monotonic())
            log.warning("MLflow did not take %s pending points (%s); they are kept in the spool and "
                        "sent when it answers again", self.counts.pending, exc)

    def _give_up(self, exc: RestError) -> None:
        self._gave_up = str(exc)
        log.error("stopped sending to MLflow: %s; %s points stay in the spool %s", exc,
                  self.counts.pending, self.spool.directory)
        with self._cond:
            self._cond.notify_all()
