"""Preemption on every wiring: SIGTERM and SIGINT become ``Killed`` in the main thread.

``session.run_session`` installs the handlers for the length of a run, whichever
wiring called it (TrackedExecutor, the run_fn shim, standalone, the Vertex
forwarder), and restores the previous ones afterwards. Vertex sends SIGTERM and
kills the task about 30 s later, so the first signal starts the grace budget
that the close must fit in; a repeated signal while the run is closing is
logged and ignored, so it cannot abort the cleanup.

``Killed`` is raised wherever the main thread is, and code there may catch it: tf-keras 2.16 builds
a ``Sequential`` model inside a bare ``except:``, so a SIGTERM that lands there was swallowed and the
training went on until Vertex's SIGKILL, with no close (measured in the 1.16 image). So until the
close begins, a repeated signal raises again, the training's safe points (the Keras callback: a
fit begins, an epoch ends) call ``SignalState.raise_if_ignored``, which raises it again there, and if
the training has still not given the stop back a fifth of the grace after the signal (5 s of 25), the
signal is delivered to the main thread again, every second, until it does.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from typing import Callable, Iterator

from trainer_runtime.core.errors import Killed

log = logging.getLogger(__name__)

HANDLED = (signal.SIGTERM, signal.SIGINT)


class SignalState:
    """What the handlers saw: the first signal and when (on the session's monotonic clock)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.signum: int | None = None
        self.received_at: float | None = None
        self.installed = False
        self._closing = False
        self._left = False
        #: how many times the training went on after the stop and was stopped again
        self.ignored = 0
        #: seconds after the signal at which it is delivered again while the training goes on
        self.redeliver_after = redeliver_delay(25.0)
        self._redelivering = False

    def closing(self) -> None:
        """From now on a signal only shortens the close to the grace budget; it raises nothing."""
        self._closing = True

    def training_left(self) -> None:
        """The training's code returned or raised: what runs from here to the close is the runtime's
        own (a chief reading its replicas' endings, a Tuner ending its trial), never stopped again (a
        first signal still stops it, as it always did)."""
        self._left = True

    def set_grace(self, grace: float) -> None:
        self.redeliver_after = redeliver_delay(grace)

    def handle(self, signum: int, frame: object = None) -> None:
        name = signal.Signals(signum).name
        if self._closing or (self._left and self.received_at is not None):
            if self.received_at is None:
                self.signum, self.received_at = signum, self._clock()
            log.warning("%s received while the run is closing; ignored (the close is bounded by the "
                        "grace budget)", name)
            return
        if self.received_at is not None:  # the first one's Killed was caught: the training went on
            self.ignored += 1
            if self._redelivering:
                if self.ignored == 1:
                    log.warning("the training went on %.1fs after %s (the code it interrupted caught the stop, "
                                "e.g. a bare `except:`); stopping it again", self._clock() - self.received_at,
                                name)
            else:
                log.warning("%s received again while the training still runs; stopping it again", name)
            raise Killed(self.signum or signum)
        self.signum, self.received_at = signum, self._clock()
        log.warning("%s received: stopping training and closing the run", name)
        raise Killed(signum)

    def raise_if_ignored(self, where: str = "") -> None:
        """A safe point of the training (``where``: e.g. "an epoch ended"): raise ``Killed`` again if a
        stop signal came before and the training went on anyway (the code it interrupted caught the
        ``Killed``). Nothing before a signal, once the close began, or off the main thread."""
        if self.received_at is None or self._closing or self._left or self.signum is None \
                or threading.current_thread() is not threading.main_thread():
            return
        self.ignored += 1
        if self.ignored == 1:
            log.warning("the training went on after %s (the code it interrupted caught the stop, e.g. a bare "
                        "`except:`); stopping it again%s", signal.Signals(self.signum).name,
                        f" as {where}" if where else "")
        raise Killed(self.signum)

    def redeliver(self, stop: threading.Event, poll: float = 0.25, every: float = 1.0) -> None:
        """The watcher's loop (its own thread, from ``handled``): once a signal is ``redeliver_after``
        seconds old and neither the training gave it back nor the close began, send it to the main
        thread again, every ``every`` seconds, until one of them happens or ``stop`` is set. It takes no
        lock the handler could hold: it only reads the state the handler writes."""
        main = threading.main_thread().ident
        sent_at = None
        while not stop.wait(poll):
            received, signum = self.received_at, self.signum
            if received is None or signum is None or self._closing or self._left:
                continue
            now = self._clock()
            if now - received < self.redeliver_after or (sent_at is not None and now - sent_at < every):
                continue
            self._redelivering = True
            sent_at = now
            signal.pthread_kill(main, signum)


def redeliver_delay(grace: float) -> float:
    """Seconds the training gets to give a stop back (its own cleanup: a checkpoint, a log line) before the
    signal is delivered again: a fifth of the grace, so the close keeps the rest."""
    return grace / 5


@contextlib.contextmanager
def handled(clock: Callable[[], float] = time.monotonic) -> Iterator[SignalState]:
    """Install the handlers while the block runs (main thread only; elsewhere Python forbids it), with
    the watcher that delivers a stop again while the training goes on after it."""
    state = SignalState(clock)
    if threading.current_thread() is not threading.main_thread():
        log.debug("not in the main thread: preemption signals are left to the caller")
        yield state
        return
    previous = {signum: signal.getsignal(signum) for signum in HANDLED}
    for signum in HANDLED:
        signal.signal(signum, state.handle)
    state.installed = True
    stop = threading.Event()
    watcher = threading.Thread(target=state.redeliver, args=(stop,), name="trainer-runtime-signals",
                               daemon=True)
    watcher.start()
    try:
        yield state
    finally:
        state.closing()
        stop.set()
        watcher.join()  # no signal is sent again once the previous handlers are back
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def exit_margin(grace: float) -> float:
    """Seconds of the grace kept for the process itself to exit after the close (TF, Beam and the
    interpreter tear down in a few seconds, more on a loaded machine): a third, at most 8 s."""
    return min(8.0, grace / 3)


class CloseBudget:
    """The one deadline of a run's close: ``normal`` seconds from now, cut after a preemption
    signal (received before or during the close) so the process exits within ``grace`` seconds
    of it."""

    def __init__(self, normal: float, grace: float, signals: SignalState,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._end = clock() + normal
        self._grace = grace
        self._signals = signals
        self.started = clock()

    def remaining(self) -> float:
        end = self._end
        if self._signals.received_at is not None:
            end = min(end, self._signals.received_at + self._grace - exit_margin(self._grace))
        return max(0.0, end - self._clock())

    def elapsed(self) -> float:
        return self._clock() - self.started

    def reserve(self, seconds: float) -> "_Reserved":
        """This budget minus ``seconds`` kept back for what comes after (status, spool upload)."""
        return _Reserved(self, seconds)


class _Reserved:
    def __init__(self, budget: CloseBudget, seconds: float) -> None:
        self._budget, self._seconds = budget, seconds

    def remaining(self) -> float:
        return max(0.0, self._budget.remaining() - self._seconds)
