"""What a fit is measured with, from outside the code under test.

- ``HookTimer`` wraps the hook methods of every callback Keras is handed that
  is not Keras's own, so the runtime's callback, MLflow's ``MlflowCallback``
  and the bench's baselines are timed the same way, however they got into
  ``fit`` (the runtime's hook appends its callback inside ``fit``).
- ``Timeline`` is a callback recording when steps end (training stalls, first step).
- ``ThreadCpu`` is the CPU of the process's Python threads other than the main
  one: the loggers' background workers (the runtime's, MLflow's async pool).
- ``tree_cpu`` is the CPU of a process and its children (the MLflow server).
"""
from __future__ import annotations

import functools
import statistics
import threading
import time
from typing import Any

#: Hook methods timed when a callback overrides them.
HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_train_batch_begin",
         "on_train_batch_end", "on_batch_begin", "on_batch_end", "on_test_begin", "on_test_end",
         "on_test_batch_end")
BATCH_END_HOOKS = ("on_train_batch_end", "on_batch_end")
PROBE = "_bench_probe"


class HookTimer:
    """Training-thread seconds spent inside the callbacks under test, per fit."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.seconds = 0.0            # every hook of the callbacks under test
        self.batch_seconds = 0.0      # their train-batch-end hooks
        self.batch_calls = 0
        self.dispatch_seconds = 0.0   # Keras's CallbackList.on_train_batch_end, which also converts
        self.dispatch_calls = 0       # logs to numpy for callbacks that cannot take tensors
        self.timed: list[str] = []
        self._depth = 0

    def result(self, steps: int) -> dict[str, Any]:
        return {"hook_s": self.seconds, "hook_batch_s": self.batch_seconds, "hook_batch_calls": self.batch_calls,
                "hook_us_per_step": 1e6 * self.batch_seconds / steps if self.batch_calls else None,
                "dispatch_us_per_step": 1e6 * self.dispatch_seconds / steps if self.dispatch_calls else None,
                "timed_callbacks": sorted(set(self.timed))}

    def install(self, callbacks_module: Any) -> None:
        """Patch ``callbacks_module.CallbackList`` (tf_keras's) for the life of this process."""
        cls = callbacks_module.CallbackList
        timer, init, dispatch = self, cls.__init__, cls.on_train_batch_end

        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            init(self, *args, **kwargs)
            for callback in self.callbacks:
                timer._wrap(callback)

        @functools.wraps(dispatch)
        def on_train_batch_end(self, batch, logs=None):
            started = time.perf_counter()
            try:
                return dispatch(self, batch, logs)
            finally:
                timer.dispatch_seconds += time.perf_counter() - started
                timer.dispatch_calls += 1

        cls.__init__, cls.on_train_batch_end = __init__, on_train_batch_end

    def _wrap(self, callback: Any) -> None:
        module = type(callback).__module__
        if getattr(callback, PROBE, False) or module.split(".")[0] in ("tf_keras", "keras"):
            return
        self.timed.append(f"{module}.{type(callback).__name__}")
        for name in HOOKS:
            method = getattr(callback, name, None)
            if method is None or getattr(method, "_is_default", False):
                continue  # not overridden: Keras skips or no-ops it
            setattr(callback, name, self._timed(method, name in BATCH_END_HOOKS))

    def _timed(self, method: Any, batch_end: bool) -> Any:
        timer = self

        @functools.wraps(method)
        def timed(*args, **kwargs):
            if timer._depth:  # on_train_batch_end calling on_batch_end: count once
                return method(*args, **kwargs)
            timer._depth += 1
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                timer._depth -= 1
                timer.seconds += elapsed
                if batch_end:
                    timer.batch_seconds += elapsed
                    timer.batch_calls += 1
        return timed


def timeline_callback(base: type, on_epoch_end=None) -> Any:
    """A ``base`` (Keras Callback) subclass instance recording step ends; it takes tensors
    as they are, so it adds no log conversion of its own."""

    class Timeline(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self._supports_tf_logs = True  # on the instance: Callback.__init__ set it False there
            setattr(self, PROBE, True)
            self.step_ends: list[float] = []
            self.first_begin: float | None = None   # wall clock (time.time), comparable across processes
            self.first_end: float | None = None

        def on_train_batch_begin(self, batch, logs=None):
            if self.first_begin is None:
                self.first_begin = time.time()

        def on_train_batch_end(self, batch, logs=None):
            if self.first_end is None:
                self.first_end = time.time()
            self.step_ends.append(time.perf_counter())

        def on_epoch_end(self, epoch, logs=None):
            if on_epoch_end is not None:
                on_epoch_end(epoch)

        def stalls(self, threshold: float = 0.25) -> dict[str, float]:
            """Steps that took over ``threshold`` s: their time beyond a median step."""
            gaps = [b - a for a, b in zip(self.step_ends, self.step_ends[1:])]
            if not gaps:
                return {"stall_s": 0.0, "max_gap_s": 0.0, "median_step_ms": 0.0}
            median = statistics.median(gaps)
            return {"stall_s": sum(g - median for g in gaps if g > threshold), "max_gap_s": max(gaps),
                    "median_step_ms": 1000 * median}

    return Timeline()


class ThreadCpu:
    """CPU seconds of Python threads other than the main one, including ones that ended."""

    def __init__(self) -> None:
        self._ended = 0.0
        self._lock = threading.Lock()

    def install(self) -> None:
        """Count every thread's CPU when its run() returns (threads from now on)."""
        original, meter = threading.Thread.run, self

        def run(thread):
            started = time.thread_time()
            try:
                original(thread)
            finally:
                with meter._lock:
                    meter._ended += time.thread_time() - started
        threading.Thread.run = run

    def seconds(self) -> float:
        main = threading.main_thread()
        live = 0.0
        with self._lock:
            ended = self._ended
            for thread in threading.enumerate():
                if thread is main or thread.ident is None or not thread.is_alive():
                    continue
                try:
                    live += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
                except (OSError, ProcessLookupError):
                    pass  # it just ended; counted in _ended
        return ended + live


def process_cpu() -> float:
    import psutil

    times = psutil.Process().cpu_times()
    return times.user + times.system


def tree_cpu(pid: int | None) -> float | None:
    """user+system CPU seconds of ``pid`` and its live children (None when it is gone)."""
    if pid is None:
        return None
    import psutil

    try:
        root = psutil.Process(pid)
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total
    except psutil.NoSuchProcess:
        return None
