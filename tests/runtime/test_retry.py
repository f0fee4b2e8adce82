"""The one retry loop (``core.retry.retry``) on a fake clock, and the two loops built on it: the
preflight's (which reads ``RuntimeFailure.retryable``) and a Tuner trial's run creation. Nothing here
really waits."""
from __future__ import annotations

import logging

import pytest

from tests.runtime.helpers import FakeClock
from trainer_runtime.core.config import load_config
from trainer_runtime.core.errors import Killed, TrackingApiError, TrackingUnavailableError
from trainer_runtime.core.retry import Deadline, GaveUp, retry
from trainer_runtime.tracking.preflight import AuthContext, Checker, Reply
from trainer_runtime.tracking.rest import RestError


class Flaky:
    """Fails with ``failures`` in turn (each raised once), then returns ``"done"``; records the attempts."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.attempts: list[int] = []

    def __call__(self, attempt: int) -> str:
        self.attempts.append(attempt)
        if self.failures:
            raise self.failures.pop(0)
        return "done"


class Later(Exception):
    retryable = True


def _retryable(exc: BaseException) -> bool:
    return getattr(exc, "retryable", False)


def test_retries_until_the_call_succeeds_waiting_each_delay_in_turn():
    clock, told = FakeClock(), []
    call = Flaky(Later("a"), Later("b"))
    result = retry(call, retryable=_retryable, delays=iter([1.0, 2.0, 4.0]), deadline=Deadline(60, clock),
                   sleep=clock.sleep, on_retry=lambda *args: told.append(args))
    assert result == "done" and call.attempts == [1, 2, 3]
    assert clock.sleeps == [1.0, 2.0]
    assert [(attempt, str(exc), delay) for attempt, exc, delay in told] == [(1, "a", 1.0), (2, "b", 2.0)]


@pytest.mark.parametrize("last_try, sleeps", [
    (True, [1.0, 1.0, 1.0, 0.5]),   # tries at 0, 1, 2, 3, and one last at the deadline, 3.5
    (False, [1.0, 1.0, 1.0]),       # with 0.5 s left, a wait of 1 s is not begun
])
def test_at_the_deadline_it_gives_up_with_the_last_failure(last_try, sleeps):
    clock = FakeClock()
    call = Flaky(*(Later(str(i)) for i in range(100)))
    with pytest.raises(GaveUp) as gave_up:
        retry(call, retryable=_retryable, delays=iter([1.0] * 100), deadline=Deadline(3.5, clock),
              sleep=clock.sleep, last_try_at_deadline=last_try)
    assert clock.sleeps == sleeps
    assert gave_up.value.attempts == len(sleeps) + 1 == len(call.attempts)
    assert str(gave_up.value.last) == str(len(sleeps)) and gave_up.value.__cause__ is gave_up.value.last


def test_a_failure_that_is_not_retryable_passes_through_unchanged():
    clock = FakeClock()
    refused = ValueError("refused")
    call = Flaky(Later("a"), refused)
    with pytest.raises(ValueError) as raised:
        retry(call, retryable=_retryable, delays=iter([1.0] * 10), deadline=Deadline(60, clock), sleep=clock.sleep)
    assert raised.value is refused and call.attempts == [1, 2] and clock.sleeps == [1.0]


def test_a_signal_is_never_retried():
    clock = FakeClock()
    call = Flaky(Killed(15))
    with pytest.raises(Killed):
        retry(call, retryable=lambda exc: True, delays=iter([1.0] * 10), deadline=Deadline(60, clock),
              sleep=clock.sleep)
    assert call.attempts == [1] and clock.sleeps == []


def test_the_wait_may_depend_on_the_failure():
    clock = FakeClock()
    call = Flaky(Later("slow"), Later("fast"))
    retry(call, retryable=_retryable, delays=lambda exc: 0.25 if str(exc) == "fast" else 5.0,
          deadline=Deadline(60, clock), sleep=clock.sleep)
    assert clock.sleeps == [5.0, 0.25]


# --- the preflight: what is retried is what the error classes call retryable -------------------
def _checker(replies: list[Reply], seconds: float = 30.0) -> tuple[Checker, FakeClock, list[str]]:
    clock, asked = FakeClock(), []

    def probe(endpoint: str, timeout: float) -> Reply:
        asked.append(endpoint)
        return replies.pop(0) if len(replies) > 1 else replies[0]

    checker = Checker("http://tracking", probe, AuthContext("none"), Deadline(seconds, clock), sleep=clock.sleep)
    return checker, clock, asked


def test_the_preflight_retries_what_is_retryable_and_not_what_is_not():
    assert TrackingUnavailableError.retryable and not TrackingApiError.retryable
    checker, clock, asked = _checker([Reply(503), Reply(None, error="refused"), Reply(200, "ok")])
    assert checker.get("/health", "health check").body == "ok"
    assert len(asked) == 3 and len(clock.sleeps) == 2
    checker, clock, asked = _checker([Reply(503), Reply(418, "teapot")])
    with pytest.raises(TrackingApiError):
        checker.get("/api/2.0/mlflow/experiments/get-by-name", "API check")
    assert len(asked) == 2 and len(clock.sleeps) == 1


def test_the_preflight_gives_up_at_its_budget_with_the_attempts_and_the_last_reason(caplog):
    caplog.set_level(logging.WARNING, "trainer_runtime.tracking.preflight")
    checker, clock, asked = _checker([Reply(503)], seconds=20)
    with pytest.raises(TrackingUnavailableError) as raised:
        checker.get("/health", "health check")
    assert sum(clock.sleeps) == pytest.approx(20) and max(clock.sleeps) <= 1.25, "polled, up to the budget"
    assert f"({len(asked)} attempts; last: HTTP 503)" in str(raised.value)
    assert raised.value.__suppress_context__, "the status's traceback shows the preflight's error alone"
    logged = [r.getMessage() for r in caplog.records]
    assert logged[0].startswith("health check attempt 1 of at most ") and "HTTP 503" in logged[0]
    assert logged[-1].startswith(f"health check attempt {len(asked)} of at most "), "the last try is logged"


# --- a Tuner trial's run: created in a few tries on injected time -----------------------------
class FakeRest:
    """Fails with ``failures`` in turn (the last one for ever if ``forever``), then creates the run."""

    def __init__(self, *failures: RestError, forever: bool = False) -> None:
        self.failures, self.forever = list(failures), forever
        self.timeouts: list[float] = []

    def create_run(self, experiment_id, run_name, tags, start_time_ms, timeout):
        self.timeouts.append(timeout)
        assert len(self.timeouts) <= 20, "tried on past the budget: the budget is not on the injected clock"
        if self.failures:
            raise self.failures[-1] if self.forever else self.failures.pop(0)
        return "trial-run"


def _trials(rest: FakeRest):
    from trainer_runtime.tfx.trials import TrialRuns
    from trainer_runtime.tracking.runs import TrackingContext

    clock = FakeClock()
    ctx = TrackingContext(None, load_config({"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}), "1", "search",
                          "parent-run", "search", "test", "none")
    return TrialRuns(ctx, rest=rest, monotonic=clock, sleep=clock.sleep), clock


def test_a_trial_run_is_created_after_retryable_failures_without_really_waiting():
    rest = FakeRest(RestError("no answer"), RestError("HTTP 503", status=503))
    trials, clock = _trials(rest)
    assert trials._create("0") == "trial-run"
    assert len(rest.timeouts) == 3 and len(clock.sleeps) == 2
    assert 0.4 <= clock.sleeps[0] <= 0.6 and 0.8 <= clock.sleeps[1] <= 1.2, "the create backoff: 0.5 s, 1 s (±20%)"


def test_a_trial_run_is_given_up_at_its_budget_and_the_trial_goes_on_untracked(caplog, monkeypatch):
    from trainer_runtime.core.retry import Backoff
    from trainer_runtime.tfx import trials as trials_module

    caplog.set_level(logging.INFO, "trainer_runtime.tfx.trials")
    monkeypatch.setattr(trials_module, "CREATE_BACKOFF", Backoff(initial=0.5, factor=2.0, maximum=3.0, jitter=0))
    rest = FakeRest(RestError("HTTP 503", status=503), forever=True)
    trials, clock = _trials(rest)
    assert trials._create("0") is None
    assert clock.sleeps == [0.5, 1.0, 2.0, 3.0, 3.0], "at 9.5 s of 10 no wait of 3 s is begun"
    assert len(rest.timeouts) == 6
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning == ["trial 0 runs without its own MLflow run: creating it failed 6 time(s) (HTTP 503); "
                       "its score still goes to run parent-run"]


def test_a_trial_run_the_server_refuses_is_not_tried_again():
    rest = FakeRest(RestError("bad name", status=400, code="INVALID_PARAMETER_VALUE"))
    trials, clock = _trials(rest)
    assert trials._create("0") is None
    assert len(rest.timeouts) == 1 and clock.sleeps == []
