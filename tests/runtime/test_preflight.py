"""Preflight against the live MLflow server, through the fault/auth proxies.

Each case checks the error type (and so the exit code), the status file and the time taken.
"""
from __future__ import annotations

import logging
import uuid

import pytest

from tests.runtime.helpers import FakeClock, deps, read_json, timed
from trainer_runtime.core.config import load_config
from trainer_runtime.core.errors import (HostHeaderError, TrackingAuthError, TrackingEndpointError,
                                    TrackingUnavailableError)
from trainer_runtime.run.chief import open_tracking
from trainer_runtime.run.session import run_tracked


def _env(uri: str, **extra) -> dict:
    return {"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": f"pf-{uuid.uuid4().hex[:8]}", **extra}


def _run(env: dict, status_dir, **deps_kw):
    """run_tracked with a trivial train step; returns (result, exc, seconds, status dict)."""
    trained = []
    result, exc, seconds = timed(run_tracked, lambda: load_config(env), lambda ctx: trained.append(ctx) or "ok",
                                 status_dir=str(status_dir), deps=deps(env, **deps_kw))
    status = read_json(status_dir / "mlflow_status.json")
    return result, exc, seconds, status, trained


def test_warm_server_passes_and_writes_both_files(mlflow_server, tmp_path, clean_env):
    env = _env(mlflow_server.url)
    result, exc, seconds, status, trained = _run(env, tmp_path)
    assert exc is None and result == "ok"
    assert status["stage"] == "completed"
    assert list(status["timestamps"]) == ["initializing", "initialized", "training", "completed"]
    info = read_json(tmp_path / "mlflow_info.json")
    assert info["run_id"] == status["run_id"] == trained[0].run_id
    assert info["experiment_name"] == env["MLFLOW_EXPERIMENT_NAME"]
    assert info["run_url"].startswith(mlflow_server.url + "/#/experiments/")
    assert status["server_version"] == "3.17.2"
    from mlflow import MlflowClient

    assert MlflowClient(mlflow_server.url).get_run(info["run_id"]).info.status == "FINISHED"
    assert seconds < 10


def test_preflight_asks_each_question_once(fault_proxy, tmp_path, clean_env):
    """The round trips before training, counted at a real proxy: the API check is the experiment
    lookup (not asked again), and the created run is what the server answered (no read-back).
    On Cloud Run each round trip is tens of milliseconds before the first step."""
    api = "/api/2.0/mlflow"
    env = _env(fault_proxy.url)
    seen = []

    def preflight_requests(_ctx):
        seen.append(fault_proxy.control.stats()["requests"])

    for _ in range(2):  # a new experiment, then the same one again
        fault_proxy.control.set(reset=True)
        run_tracked(lambda: load_config(env), preflight_requests, status_dir=str(tmp_path), deps=deps(env))
    once = {"/health": 1, f"{api}/experiments/get-by-name": 1, "/version": 1, f"{api}/runs/create": 1}
    assert seen == [{**once, f"{api}/experiments/create": 1}, once]


def test_a_deleted_experiment_is_refused_from_the_preflight_lookup(mlflow_server, tmp_path, clean_env):
    from mlflow import MlflowClient

    from trainer_runtime.core.errors import ConfigError

    env = _env(mlflow_server.url)
    client = MlflowClient(mlflow_server.url)
    client.delete_experiment(client.create_experiment(env["MLFLOW_EXPERIMENT_NAME"]))
    _, exc, _, status, trained = _run(env, tmp_path)
    assert isinstance(exc, ConfigError) and "is deleted" in str(exc) and not trained
    assert status["stage"] == "failed"


def test_cold_start_of_20s_passes(fault_proxy, tmp_path, clean_env, caplog):
    fault_proxy.control.set(cold_start_seconds=20)
    caplog.set_level(logging.WARNING, "trainer_runtime.tracking.preflight")
    _, exc, seconds, status, trained = _run(_env(fault_proxy.url), tmp_path)
    assert exc is None, exc
    assert status["stage"] == "completed" and trained
    assert 19 <= seconds < 60
    attempts = [r.getMessage() for r in caplog.records if "attempt" in r.getMessage()]
    assert attempts and attempts[0].startswith("health check attempt 1 of ")
    assert "HTTP 503" in attempts[0]


def test_training_starts_within_a_second_of_a_cold_server_turning_healthy(fault_proxy, tmp_path, clean_env,
                                                                        caplog):
    """/health is polled at most a second apart (not on a backoff that grows to 30 s), and a long
    wait logs a warning every 10 s, not on every poll."""
    import time

    caplog.set_level(logging.WARNING, "trainer_runtime.tracking.preflight")
    fault_proxy.control.set(cold_start_seconds=25)
    healthy_at = time.monotonic() + 25
    entered = []
    env = _env(fault_proxy.url)
    run_tracked(lambda: load_config(env), lambda ctx: entered.append(time.monotonic()),
                status_dir=str(tmp_path), deps=deps(env))
    late = entered[0] - healthy_at
    # A poll at most 1 s apart, then the run's creation: under 1.5 s on a quiet machine, 1.73 s measured
    # with three suites at once (load average 30). A backoff grown toward 30 s would be late by seconds more.
    assert 0 <= late < 3.0, f"train entered {late:.2f}s after the server turned healthy"
    warnings = [r for r in caplog.records if "attempt" in r.getMessage()]
    assert 3 <= len(warnings) <= 3 + 3, [r.getMessage() for r in warnings]


def test_server_down_throughout_fails_within_the_budget(fault_proxy, tmp_path, clean_env):
    fault_proxy.control.set(status=503)
    env = _env(fault_proxy.url, TRAINER_RUNTIME_PREFLIGHT_TIMEOUT="6")
    _, exc, seconds, status, trained = _run(env, tmp_path)
    assert isinstance(exc, TrackingUnavailableError) and exc.exit_code == 10
    assert 5 <= seconds < 6 + 3
    assert status["stage"] == "failed" and not trained
    assert status["error"]["type"] == "TrackingUnavailableError"
    assert "PREFLIGHT_TIMEOUT" in status["error"]["hint"]
    assert not (tmp_path / "mlflow_info.json").exists()


def test_retries_use_the_injected_clock_and_never_really_wait(fault_proxy, tmp_path, clean_env):
    """300 s of budget spent in virtual time against a real always-503 server."""
    fault_proxy.control.set(status=503)
    clock = FakeClock()
    env = _env(fault_proxy.url)
    _, exc, seconds, status, _ = _run(env, tmp_path, clock=clock, sleep=clock.sleep)
    assert isinstance(exc, TrackingUnavailableError)
    assert seconds < 60, "real time is only the ~300 polls of /health, a second apart in virtual time"
    assert 295 <= sum(clock.sleeps) <= 300 + 1e-6
    assert clock.sleeps[0] < clock.sleeps[3], "backoff grows"
    assert max(clock.sleeps) <= 30 * 1.25


def test_unreachable_port_is_unavailable(tmp_path, clean_env):
    from tests.harness.procs import free_port

    env = _env(f"http://127.0.0.1:{free_port()}", TRAINER_RUNTIME_PREFLIGHT_TIMEOUT="2")
    _, exc, seconds, status, _ = _run(env, tmp_path)
    assert isinstance(exc, TrackingUnavailableError)
    assert "Connection refused" in exc.message
    assert seconds < 5


def test_wrong_path_prefix_is_a_404_error(mlflow_server, tmp_path, clean_env):
    _, exc, seconds, status, _ = _run(_env(mlflow_server.url + "/wrong-prefix"), tmp_path)
    assert isinstance(exc, TrackingEndpointError) and exc.exit_code == 13
    assert "wrong host or path prefix" in exc.message
    assert status["error"]["type"] == "TrackingEndpointError"
    assert seconds < 5


def test_real_mlflow_host_header_check_is_its_own_error(mlflow_server, tmp_path, clean_env):
    """localhost reaches the same server, but its --allowed-hosts only lists 127.0.0.1:<port>."""
    uri = mlflow_server.url.replace("127.0.0.1", "localhost")
    _, exc, _, status, _ = _run(_env(uri), tmp_path)
    assert isinstance(exc, HostHeaderError) and exc.exit_code == 12
    assert "--allowed-hosts" in exc.hint and "localhost:" in exc.hint
    assert status["error"]["type"] == "HostHeaderError"


def test_host_header_403_through_proxy(fault_proxy, tmp_path, clean_env):
    fault_proxy.control.set(host_403=True)
    _, exc, _, _, _ = _run(_env(fault_proxy.url), tmp_path)
    assert isinstance(exc, HostHeaderError)
    assert fault_proxy.control.stats()["requests"].get("/health") == 1


@pytest.mark.parametrize("code", [401, 403])
def test_plain_401_403_without_auth_fail_at_once(fault_proxy, tmp_path, clean_env, code):
    fault_proxy.control.set(status=code)
    _, exc, seconds, status, _ = _run(_env(fault_proxy.url), tmp_path)
    assert isinstance(exc, TrackingAuthError) and exc.exit_code == 11
    assert "requires authentication" in exc.message and "TRAINER_RUNTIME_AUTH=google" in exc.hint
    assert fault_proxy.control.stats()["requests"]["/health"] == 1, "auth errors are not retried"
    assert seconds < 5


def test_google_auth_through_cloud_run_stand_in(metadata, auth_proxy, tmp_path, clean_env):
    env = _env(auth_proxy.url, TRAINER_RUNTIME_AUTH="google")
    _, exc, _, status, _ = _run(env, tmp_path)
    assert exc is None, exc
    assert status["stage"] == "completed"
    shapes = auth_proxy.control.stats()["auth_shapes"]
    assert set(shapes) == {"Bearer <jwt>"}, shapes
    assert metadata.control.stats()["tokens_issued"] == 1, "one token, refreshed only when near expiry"


def test_403_names_the_identity_and_run_invoker(metadata, auth_proxy, tmp_path, clean_env):
    auth_proxy.control.set(invokers=["someone-else@test-project.iam.gserviceaccount.com"])
    env = _env(auth_proxy.url, TRAINER_RUNTIME_AUTH="google")
    _, exc, seconds, status, _ = _run(env, tmp_path)
    assert isinstance(exc, TrackingAuthError)
    assert "trainer@test-project.iam.gserviceaccount.com" in exc.message
    assert "roles/run.invoker" in exc.hint
    assert status["error"]["hint"] == exc.hint
    assert seconds < 5


def test_401_for_a_wrong_audience(metadata, auth_proxy, tmp_path, clean_env):
    env = _env(auth_proxy.url, TRAINER_RUNTIME_AUTH="google", TRAINER_RUNTIME_AUDIENCE="https://elsewhere")
    _, exc, _, _, _ = _run(env, tmp_path)
    assert isinstance(exc, TrackingAuthError)
    assert "401" in exc.message and "https://elsewhere" in exc.message
    assert "TRAINER_RUNTIME_AUDIENCE" in exc.hint


def test_expired_token_is_rejected(metadata, auth_proxy, tmp_path, clean_env):
    metadata.control.set(lifetime=-120)
    env = _env(auth_proxy.url, TRAINER_RUNTIME_AUTH="google")
    _, exc, _, _, _ = _run(env, tmp_path)
    assert isinstance(exc, TrackingAuthError) and "401" in exc.message
    failures = auth_proxy.control.stats()["auth_failures"]
    assert failures and "expired" in failures[-1].lower()


def test_garbage_mlflow_token_is_rejected(auth_proxy, tmp_path, clean_env):
    clean_env.setenv("MLFLOW_TRACKING_TOKEN", "garbage-token-value")
    import os

    env = dict(os.environ, **_env(auth_proxy.url))
    _, exc, _, status, _ = _run(env, tmp_path)
    assert isinstance(exc, TrackingAuthError)
    assert "MLflow's token" in exc.message
    assert "garbage-token-value" not in (tmp_path / "mlflow_status.json").read_text()


def test_metadata_server_failure_is_a_typed_auth_error(metadata, auth_proxy, tmp_path, clean_env):
    metadata.control.set(fail_status=500)
    env = _env(auth_proxy.url, TRAINER_RUNTIME_AUTH="google")
    _, exc, _, status, _ = _run(env, tmp_path)
    assert isinstance(exc, TrackingAuthError)
    assert "metadata server" in exc.message
    assert auth_proxy.control.stats()["requests"] == {}, "nothing is sent without a token"


def test_concurrent_preflights_on_one_new_experiment(mlflow_server, tmp_path, clean_env):
    import threading

    env = _env(mlflow_server.url)
    barrier = threading.Barrier(2)
    results: dict[int, object] = {}

    def one(i: int) -> None:
        barrier.wait()
        results[i] = timed(open_tracking, load_config(env), deps(env))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    contexts = [r[0] for r in results.values()]
    assert [r[1] for r in results.values()] == [None, None]
    assert contexts[0].experiment_id == contexts[1].experiment_id
    assert contexts[0].run_id != contexts[1].run_id


def test_losing_the_create_race_is_handled(mlflow_server, clean_env):
    """Deterministic race: this client's lookup is stale (None), the real server says ALREADY_EXISTS."""
    from mlflow import MlflowClient

    from trainer_runtime.tracking.runs import ensure_experiment

    name = f"race-{uuid.uuid4().hex[:8]}"
    real = MlflowClient(mlflow_server.url)
    winner = real.create_experiment(name)

    class StaleFirstLookup:
        def __init__(self):
            self.lookups = 0

        def get_experiment_by_name(self, n):
            self.lookups += 1
            return None if self.lookups == 1 else real.get_experiment_by_name(n)

        def create_experiment(self, n):
            return real.create_experiment(n)

    assert ensure_experiment(StaleFirstLookup(), name) == winner


def test_attach_to_existing_run_via_mlflow_run_id(mlflow_server, tmp_path, clean_env):
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server.url)
    exp = client.create_experiment(f"attach-{uuid.uuid4().hex[:8]}")
    run_id = client.create_run(exp).info.run_id
    env = _env(mlflow_server.url, MLFLOW_RUN_ID=run_id)
    _, exc, _, status, trained = _run(env, tmp_path)
    assert exc is None
    assert status["run_id"] == run_id and status["experiment_id"] == exp
    assert client.get_run(run_id).info.status == "FINISHED"


def test_unknown_run_id_is_a_config_error(mlflow_server, tmp_path, clean_env):
    env = _env(mlflow_server.url, MLFLOW_RUN_ID="0" * 32)
    _, exc, _, status, _ = _run(env, tmp_path)
    assert exc is not None and exc.exit_code == 2
    assert "does not exist" in exc.message
