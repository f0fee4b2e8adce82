"""The run's lifecycle in ``run/``: the decision table, the close budget on a fake clock, the one
exit, and the chief and a replica going through the same lifecycle (live MLflow server)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid


import pytest

from tests.runtime.helpers import FakeClock, deps, read_json
from trainer_runtime.core.config import load_config
from trainer_runtime.core.errors import (ConfigError, Killed, TrackingAuthError, TrackingUnavailableError,
                                         UserCodeError, UserCodeLoadError)
from trainer_runtime.run import outcome, signals
from trainer_runtime.run.exits import exit_with
from trainer_runtime.run.session import run_session
from trainer_runtime.training.user_code import call_user


# how the run ended -> (stage, MLflow status, exit code, error type in the status)
DECISIONS = [
    ("returned", None, ("completed", "FINISHED", 0, None)),
    ("sys.exit(0)", SystemExit(0), ("completed", "FINISHED", 0, None)),
    ("sys.exit()", SystemExit(None), ("completed", "FINISHED", 0, None)),
    ("sys.exit(3)", SystemExit(3), ("failed", "FAILED", 3, "UserCodeError")),
    ("sys.exit('why')", SystemExit("why"), ("failed", "FAILED", 1, "UserCodeError")),
    ("KeyboardInterrupt", KeyboardInterrupt(), ("killed", "KILLED", 130, "Killed")),
    ("SIGTERM", Killed(signal.SIGTERM), ("killed", "KILLED", 143, "Killed")),
    ("user code raised", UserCodeError("train raised ValueError: bad batch", hint="fix it"), ("failed", "FAILED", 4, "UserCodeError")),
    ("user code not loadable", UserCodeLoadError("no module x", hint="install x"),
     ("failed", "FAILED", 3, "UserCodeLoadError")),
    ("bad config", ConfigError("no tracking URI", hint="set it"), ("failed", "FAILED", 2, "ConfigError")),
    ("server down", TrackingUnavailableError("down", hint="wait"),
     ("failed", "FAILED", 10, "TrackingUnavailableError")),
    ("403", TrackingAuthError("403", hint="grant"), ("failed", "FAILED", 11, "TrackingAuthError")),
    ("a bug of ours", KeyError("x"), ("failed", "FAILED", 70, "InternalError")),
]


@pytest.mark.parametrize("name,exc,expected", DECISIONS, ids=[d[0] for d in DECISIONS])
def test_decide_maps_every_ending(name, exc, expected):
    decided = outcome.decide(exc)
    error_type = decided.error["type"] if decided.error else None
    assert (decided.stage, decided.mlflow_status, decided.exit_code, error_type) == expected
    if decided.error:
        assert decided.error["exit_code"] == decided.exit_code, "the status says the code the process exits with"


def test_an_error_after_a_stop_signal_is_a_kill_that_names_the_error():
    error = UserCodeError("main raised AssertionError: Concurrent access?", hint="fix it")
    error.__cause__ = AssertionError("Concurrent access?")
    decided = outcome.decide(error, stopped_by=signal.SIGTERM)
    assert (decided.stage, decided.mlflow_status, decided.exit_code) == ("killed", "KILLED", 143)
    assert decided.error["type"] == "Killed" and decided.error["fault"] == "platform"
    assert decided.error["message"] == ("stopped by SIGTERM; the code it interrupted then raised "
                                        "AssertionError: Concurrent access?")
    assert outcome.decide(None, stopped_by=signal.SIGTERM).stage == "completed", "it trained to the end"
    assert outcome.decide(Killed(signal.SIGINT), stopped_by=signal.SIGTERM).exit_code == 130


def test_every_stage_has_one_mlflow_status():
    assert {stage: outcome.mlflow_status(stage) for stage in ("completed", "failed", "killed")} == {
        "completed": "FINISHED", "failed": "FAILED", "killed": "KILLED"}
    with pytest.raises(KeyError):
        outcome.mlflow_status("training")


def test_close_budget_is_normal_until_a_signal_cuts_it_to_the_grace():
    clock = FakeClock()
    sig = signals.SignalState(clock)
    budget = signals.CloseBudget(60.0, 24.0, sig, clock)
    clock.now += 10
    assert budget.remaining() == 50.0 and budget.elapsed() == 10.0
    sig.signum, sig.received_at = signal.SIGTERM, clock.now  # as the handler records it
    clock.now += 5
    # 24 s of grace from the signal, less a third kept for the process to exit: 16 s, 5 gone
    assert budget.remaining() == 11.0
    assert budget.reserve(3.0).remaining() == 8.0
    clock.now += 30
    assert budget.remaining() == 0.0 and budget.reserve(3.0).remaining() == 0.0


def test_close_budget_keeps_at_most_8_s_for_the_exit():
    clock = FakeClock()
    sig = signals.SignalState(clock)
    sig.received_at = clock.now
    assert signals.CloseBudget(300.0, 60.0, sig, clock).remaining() == 52.0
    assert signals.CloseBudget(5.0, 60.0, sig, clock).remaining() == 5.0, "never longer than the normal budget"


def test_a_signal_while_closing_only_shortens_the_close():
    clock = FakeClock()
    sig = signals.SignalState(clock)
    sig.closing()
    sig.handle(signal.SIGTERM)  # raises nothing: the cleanup must not be aborted
    assert sig.received_at == clock.now
    with pytest.raises(Killed):
        signals.SignalState(clock).handle(signal.SIGTERM)


def test_a_stop_caught_by_the_training_is_raised_again_until_the_close_begins():
    """The first SIGTERM's Killed was caught where it landed (a bare ``except:``): a second signal raises
    again, and so does the next safe point of the training; once the close began, neither does."""
    clock = FakeClock()
    sig = signals.SignalState(clock)
    sig.raise_if_ignored("an epoch ended")  # no signal yet: nothing
    with pytest.raises(Killed):
        sig.handle(signal.SIGTERM)
    first = sig.received_at
    clock.now += 3.0
    with pytest.raises(Killed) as again:
        sig.handle(signal.SIGINT)
    assert again.value.exit_code == 143 and sig.received_at == first, "the grace runs from the first signal"
    with pytest.raises(Killed):
        sig.raise_if_ignored("an epoch ended")
    assert sig.ignored == 2
    sig.closing()
    sig.handle(signal.SIGTERM)
    sig.raise_if_ignored("an epoch ended")


def test_once_the_training_gave_the_stop_back_only_a_first_signal_raises():
    """After the training's code returned or raised, the runtime's own code runs: a repeated signal is not
    raised in it, a first one still is (as before there was any redelivery)."""
    sig = signals.SignalState(FakeClock())
    sig.training_left()
    with pytest.raises(Killed):
        sig.handle(signal.SIGTERM)
    sig.handle(signal.SIGTERM)
    sig.raise_if_ignored("an epoch ended")
    assert sig.ignored == 0


def test_a_safe_point_off_the_main_thread_raises_nothing():
    import threading

    sig = signals.SignalState(FakeClock())
    with pytest.raises(Killed):
        sig.handle(signal.SIGTERM)
    raised = []

    def other():
        try:
            sig.raise_if_ignored("a step ended")
        except Killed as exc:
            raised.append(exc)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert raised == []


def test_exit_with_raises_the_outcomes_code():
    with pytest.raises(SystemExit) as raised:
        exit_with(outcome.decide(UserCodeLoadError("x", hint="y")))
    assert raised.value.code == 3


def _python(code: str, tmp_path, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    script = tmp_path / "leave.py"
    script.write_text(textwrap.dedent(code))
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    return done, time.monotonic() - started


def test_exit_with_a_teardown_bound_is_not_held_by_a_leftover_thread(tmp_path):
    done, seconds = _python("""
        import sys, threading, time
        from trainer_runtime.run.exits import exit_with
        from trainer_runtime.run.outcome import decide
        threading.Thread(target=time.sleep, args=(60,)).start()   # not a daemon: holds a normal exit
        exit_with(decide(SystemExit(5)), teardown=0.3)
    """, tmp_path)
    assert done.returncode == 5, done.stderr
    assert seconds < 30, f"the leftover thread held the exit {seconds:.1f} s"


def test_exit_with_at_once_skips_the_teardown_but_not_the_logs(tmp_path):
    done, _ = _python("""
        import atexit, logging, pathlib, sys
        from trainer_runtime.run.exits import exit_with
        from trainer_runtime.run.outcome import decide
        from trainer_runtime.core.errors import Killed
        atexit.register(lambda: pathlib.Path(sys.argv[1], "atexit-ran").write_text("x"))
        logging.basicConfig(level=logging.INFO)
        print("buffered line", end="")
        exit_with(decide(Killed(15)), at_once=True)
    """, tmp_path)
    assert done.returncode == 143, done.stderr
    assert done.stdout == "buffered line", "stdout flushed before leaving"
    assert "exiting with 143" in done.stderr
    assert not (tmp_path / "atexit-ran").exists(), "the interpreter's teardown was skipped"


# --- chief and replica: one lifecycle -------------------------------------------------------------

CLUSTER = {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"]}


def _env(uri: str, experiment: str, kind: str) -> dict:
    return {"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": experiment,
            "TF_CONFIG": json.dumps({"cluster": CLUSTER, "task": {"type": kind, "index": 0}})}


def _raises(exc):
    def user_code():
        raise exc
    return lambda ctx: call_user(user_code)


ENDINGS = {
    "returned": lambda ctx: "trained",
    "sys.exit(0)": _raises(SystemExit(0)),
    "sys.exit(3)": _raises(SystemExit(3)),
    "user code raised": _raises(ValueError("bad batch")),
    "KeyboardInterrupt": _raises(KeyboardInterrupt()),
}


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_the_chief_and_a_replica_decide_and_record_an_ending_alike(ending, mlflow_server, tmp_path, clean_env):
    experiment = f"parity-{uuid.uuid4().hex[:8]}"
    seen = {}
    for kind, status_file in (("chief", "mlflow_status.json"), ("worker", "mlflow_status.worker-0.json")):
        env = _env(mlflow_server.url, experiment, kind)
        ended = run_session(lambda: load_config(env), ENDINGS[ending], status_dir=str(tmp_path / kind),
                            deps=deps(env))
        status = read_json(tmp_path / kind / status_file)
        assert (status["stage"], status["exit_code"]) == (ended.outcome.stage, ended.outcome.exit_code)
        assert (status["error"] or {}).get("type") == (ended.outcome.error or {}).get("type")
        error = {k: v for k, v in (ended.outcome.error or {}).items() if k != "traceback"}
        seen[kind] = (ended.outcome.stage, ended.outcome.mlflow_status, ended.outcome.exit_code, error)
    assert seen["chief"] == seen["worker"], seen
    assert seen["chief"][2] == {"returned": 0, "sys.exit(0)": 0, "sys.exit(3)": 3,
                                       "user code raised": 4, "KeyboardInterrupt": 130}[ending]


def test_a_replica_leaves_at_once_after_sigterm_like_the_chief(mlflow_server, tmp_path, clean_env):
    """SIGTERM mid-training on a worker: its ending is recorded, and the process is gone with 143
    without waiting for a non-daemon thread the training left behind."""
    env = {**os.environ, **_env(mlflow_server.url, "parity-signal", "worker"),
           "PYTHONPATH": os.pathsep.join(sys.path)}
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent("""
        import os, sys, threading, time
        from trainer_runtime.core.config import load_config
        from trainer_runtime.run.session import run_session

        def train(ctx):
            threading.Thread(target=time.sleep, args=(120,)).start()
            print("training", flush=True)
            time.sleep(120)

        run_session(lambda: load_config(os.environ), train, status_dir=sys.argv[1])
        print("run_session returned", flush=True)
    """))
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "training"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    assert "run_session returned" not in out
    status = read_json(tmp_path / "mlflow_status.worker-0.json")
    assert (status["stage"], status["exit_code"], status["error"]["type"]) == ("killed", 143, "Killed")


def test_a_run_that_ends_before_its_logger_started_is_still_closed(mlflow_server, tmp_path, clean_env):
    """A failure (or a signal) between the run's creation and the logger's start: the close starts
    the logger to send the run's end, so the run is not left RUNNING."""
    from mlflow import MlflowClient

    from trainer_runtime.run.closing import close_run
    from trainer_runtime.status.reporter import StatusReporter
    from trainer_runtime.status.storage import open_dir
    from trainer_runtime.tracking.runs import TrackingContext

    client = MlflowClient(mlflow_server.url)
    experiment_id = client.create_experiment(f"early-{uuid.uuid4().hex[:8]}")
    run_id = client.create_run(experiment_id).info.run_id
    config = load_config({"MLFLOW_TRACKING_URI": mlflow_server.url,
                          "TRAINER_RUNTIME_SPOOL_DIR": str(tmp_path / "spool")})
    ctx = TrackingContext(client, config, experiment_id, "early", run_id, "early", "test", "none")
    clock = FakeClock()
    budget = signals.CloseBudget(30.0, 25.0, signals.SignalState(clock), clock)
    close_run(ctx, StatusReporter(open_dir(str(tmp_path / "status"))), outcome.decide(Killed(signal.SIGTERM)),
              budget, None)
    assert client.get_run(run_id).info.status == "KILLED"
    assert read_json(tmp_path / "status" / "mlflow_status.json")["tracking"]["state"] == "ok"
