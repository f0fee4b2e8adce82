"""Batched, non-blocking MLflow logging on a background thread.

The training thread's share is one ``queue.put_nowait``. A worker drains the
bounded queue into ``log_batch`` calls (MLflow limits: 1000 metrics, 100 params,
100 tags per call). A batch the server rejects is retried entry by entry so one
bad metric never loses the rest; bad names are sanitised, non-finite or
non-numeric values dropped, each problem reported once. When the queue is full
new points are dropped and counted, never waited for.
"""
from __future__ import annotations

import logging
import math
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .redact import is_secret_key, redact

log = logging.getLogger(__name__)

MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100
MAX_PARAM_CHARS = 6000
_BAD_NAME_CHARS = re.compile(r"[^\w\-. :/]")


def sanitize_name(name: str) -> str:
    """A name MLflow accepts: [\\w-. :/], no leading '/', no '..'."""
    clean = _BAD_NAME_CHARS.sub("_", str(name)).lstrip("/")
    while ".." in clean:
        clean = clean.replace("..", "_")
    return clean or "_"


@dataclass
class LoggerReport:
    metrics_sent: int = 0
    dropped_queue_full: int = 0
    renamed: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    lost_at_close: int = 0
    send_failures: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"metrics_sent": self.metrics_sent, "dropped_queue_full": self.dropped_queue_full,
                "renamed": dict(self.renamed), "rejected": dict(self.rejected),
                "lost_at_close": self.lost_at_close, "send_failures": self.send_failures}


_STOP = object()


class MetricsLogger:
    def __init__(self, client: Any, run_id: str, max_queue: int = 10_000,
                 clock: Callable[[], float] = time.time, retry_delay: float = 1.0) -> None:
        self._client = client
        self._run_id = run_id
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._clock = clock
        self._retry_delay = retry_delay
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._give_up = threading.Event()
        self.report = LoggerReport()
        self._inflight = 0
        self._params_sent: dict[str, str] = {}

    # --- training-thread side: never blocks ---------------------------------
    def log_metrics(self, metrics: dict[str, Any], step: int) -> None:
        self._put(("m", metrics, step, int(self._clock() * 1000)))

    def log_params(self, params: dict[str, Any]) -> None:
        self._put(("p", params))

    def set_tags(self, tags: dict[str, Any]) -> None:
        self._put(("t", tags))

    def _put(self, item: tuple) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            dropped = len(item[1]) if item[0] == "m" else 1
            if self.report.dropped_queue_full == 0:
                log.warning("MLflow logging queue is full (server slow or down); dropping new metrics "
                            "instead of blocking training. The count is reported at the end.")
            self.report.dropped_queue_full += dropped

    # --- lifecycle ------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="trainer-runtime-mlflow-logger",
                                        daemon=True)
        self._thread.start()

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued so far is sent (or timeout). True if drained."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.02)
        return self._queue.unfinished_tasks == 0

    def close(self, timeout: float) -> LoggerReport:
        """Send what is queued within ``timeout`` seconds, then stop. Never blocks longer:
        what could not be sent is counted in ``lost_at_close`` and logged."""
        if self._thread is None:
            return self.report
        drained = self.flush(timeout)
        self._give_up.set()
        lost = 0
        while True:  # whatever is still queued will not be sent in time
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                try:
                    self._queue.put_nowait(_STOP)
                    break
                except queue.Full:  # a late producer refilled it; drain again
                    continue
            self._queue.task_done()
            if item[0] == "m":
                lost += len(item[1])
        self._thread.join(timeout=max(5.0, self._retry_delay * 2))
        if self._thread.is_alive():  # stuck in a request to a hung server
            lost += self._inflight
        if not drained or lost:
            self.report.lost_at_close += lost
            log.error("%s metric points could not be sent within %.0fs and are lost "
                      "(the server was slow or down)", self.report.lost_at_close, timeout)
        self._thread = None
        return self.report

    # --- worker ----------------------------------------------------------------
    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                self._queue.task_done()
                return
            items = [item]
            while len(items) < 200:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:  # send what we have, then stop
                    self._send_safely(items)
                    self._queue.task_done()
                    for _ in items:
                        self._queue.task_done()
                    return
                items.append(nxt)
            self._send_safely(items)
            for _ in items:
                self._queue.task_done()

    def _send_safely(self, items: list[tuple]) -> None:
        try:
            self._send(items)
        except Exception:  # a bug here must not kill the worker and leave close() waiting
            self.report.lost_at_close += sum(len(item[1]) for item in items if item[0] == "m")
            log.exception("could not send %s queued MLflow entries", len(items))

    def _entities(self, items: list[tuple]) -> tuple[list, list, list]:
        from mlflow.entities import Metric, Param, RunTag

        metrics, params, tags = [], [], []
        for item in items:
            if item[0] == "m":
                _, values, step, ts = item
                for name, value in values.items():
                    clean = self._clean_metric(name, value)
                    if clean is not None:
                        metrics.append(Metric(clean[0], clean[1], ts, int(step)))
            elif item[0] == "p":
                for name, value in item[1].items():
                    key, text = sanitize_name(name), self._param_text(name, value)
                    if text is not None and self._params_sent.get(key) != text:
                        self._params_sent[key] = text
                        params.append(Param(key, text))
            else:
                for name, value in item[1].items():
                    tags.append(RunTag(sanitize_name(name), redact(str(value))[:MAX_PARAM_CHARS]))
        return metrics, params, tags

    def _param_text(self, name: str, value: Any) -> str | None:
        if is_secret_key(str(name)):
            self._reject_once(str(name), "looks like a secret; not logged")
            return None
        text = redact(str(value))
        return text if len(text) <= MAX_PARAM_CHARS else text[:MAX_PARAM_CHARS - 1] + "…"

    def _clean_metric(self, name: str, value: Any) -> tuple[str, float] | None:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self._reject_once(str(name), f"not a number ({type(value).__name__})")
            return None
        if not math.isfinite(number):
            self._reject_once(str(name), f"non-finite value {number}")
            return None
        clean = sanitize_name(name)
        if clean != name and name not in self.report.renamed:
            self.report.renamed[str(name)] = clean
            log.warning("metric %r renamed to %r (MLflow does not accept that name)", name, clean)
        return clean, number

    def _reject_once(self, name: str, reason: str) -> None:
        if name not in self.report.rejected:
            self.report.rejected[name] = reason
            log.warning("metric/param %r dropped: %s (reported once)", name, reason)

    def _send(self, items: list[tuple]) -> None:
        metrics, params, tags = self._entities(items)
        chunks = []
        while metrics or params or tags:
            chunks.append((metrics[:MAX_METRICS], params[:MAX_PARAMS], tags[:MAX_TAGS]))
            metrics, params, tags = metrics[MAX_METRICS:], params[MAX_PARAMS:], tags[MAX_TAGS:]
        for m, p, t in chunks:
            self._send_chunk(m, p, t)

    def _send_chunk(self, metrics: list, params: list, tags: list) -> None:
        from mlflow.exceptions import MlflowException

        while True:
            self._inflight = len(metrics)
            try:
                self._client.log_batch(self._run_id, metrics=metrics, params=params, tags=tags,
                                       synchronous=True)
                self.report.metrics_sent += len(metrics)
                self._inflight = 0
                return
            except MlflowException as exc:
                if exc.error_code == "INVALID_PARAMETER_VALUE" and len(metrics) + len(params) + len(tags) > 1:
                    self._send_one_by_one(metrics, params, tags)
                    return
                if exc.error_code == "INVALID_PARAMETER_VALUE":
                    self._inflight = 0
                    entity = (metrics + params + tags)[0]
                    self._reject_once(entity.key, f"rejected by the server: {_first_line(exc)}")
                    return
                failure = exc
            except Exception as exc:  # connection trouble after MLflow's own retries
                failure = exc
            self.report.send_failures += 1
            if self._give_up.is_set():
                self._inflight = 0
                self.report.lost_at_close += len(metrics)
                log.error("giving up on %s metric points: %s", len(metrics), _first_line(failure))
                return
            log.warning("log_batch failed, retrying in %.0fs: %s", self._retry_delay, _first_line(failure))
            self._give_up.wait(self._retry_delay)

    def _send_one_by_one(self, metrics: list, params: list, tags: list) -> None:
        for m in metrics:
            self._send_chunk([m], [], [])
        for p in params:
            self._send_chunk([], [p], [])
        for t in tags:
            self._send_chunk([], [], [t])


def _first_line(exc: BaseException) -> str:
    return redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)[:300]
