"""Bounded exponential backoff with jitter, driven by an injectable clock."""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator


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
