"""Bounded exponential backoff with jitter, and one retry loop, on an injectable clock and sleep."""
from __future__ import annotations

import functools
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, TypeVar


@dataclass(frozen=True)
class Backoff:
    """Delays of initial * factor**i, capped at ``maximum``, each +/- ``jitter`` (a fraction)."""

    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 30.0
    jitter: float = 0.25

    def nominal(self) -> Iterator[float]:
        delay = self.initial
        while True:
            yield min(delay, self.maximum)
            delay *= self.factor

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        rng = rng or random.Random()
        for delay in self.nominal():
            yield max(0.0, delay * (1 + rng.uniform(-self.jitter, self.jitter)))

    def max_attempts(self, budget: float) -> int:
        """At most how many tries fit in ``budget`` seconds if every try failed at once
        (shortest jittered delays, plus the last try at the end of the budget)."""
        attempts, spent = 1, 0.0
        for delay in self.nominal():
            spent += delay * (1 - self.jitter)
            attempts += 1
            if spent >= budget or attempts > 10_000:
                return attempts


@dataclass
class Deadline:
    """A time budget measured on an injectable monotonic clock."""

    seconds: float
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def remaining(self) -> float:
        return max(0.0, self.seconds - self.elapsed())


T = TypeVar("T")


class GaveUp(Exception):
    """A retried call failed on every try its budget allowed. ``last`` (also ``__cause__``) is the
    final failure; ``attempts`` how many tries were made."""

    def __init__(self, attempts: int, last: BaseException) -> None:
        super().__init__(f"gave up after {attempts} attempt(s): {last}")
        self.attempts = attempts
        self.last = last


def retry(call: Callable[[int], T], *, retryable: Callable[[BaseException], bool],
          delays: Iterable[float] | Callable[[BaseException], float], deadline: Deadline,
          sleep: Callable[[float], None] = time.sleep,
          on_retry: Callable[[int, BaseException, float], None] | None = None,
          last_try_at_deadline: bool = True) -> T:
    """``call(attempt)`` (attempt 1, 2, …) until it returns, within ``deadline``.

    Args:
        retryable: whether a failure may be tried again; any other failure is raised at once,
            unchanged (as is a ``BaseException`` that is not an ``Exception``: a signal's ``Killed``).
        delays: the seconds to wait before each next try: an iterator (``Backoff.delays()``), or a
            function of the failure when the wait depends on it.
        sleep: waits that long (injectable: tests advance a fake clock instead).
        on_retry: told ``(attempt, failure, delay)`` before each wait, so the caller logs the try
            in its own words (e.g. "attempt %s of %s").
        last_try_at_deadline: when the next wait would run past the deadline, True cuts it short
            for one last try at the deadline; False gives up at once (a try squeezed in at the
            deadline would have no time left to be answered).

    Raises:
        GaveUp: the budget is spent; the last failure is its ``__cause__``.
    """
    pace = delays if callable(delays) else functools.partial(_next, iter(delays))
    attempt = 0
    while True:
        attempt += 1
        try:
            return call(attempt)
        except Exception as exc:
            if not retryable(exc):
                raise
            remaining, delay = deadline.remaining(), pace(exc)
            if remaining <= (0.0 if last_try_at_deadline else delay):
                raise GaveUp(attempt, exc) from exc
            delay = min(delay, remaining)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
        sleep(delay)


def _next(delays: Iterator[float], _failure: BaseException) -> float:
    return next(delays)
