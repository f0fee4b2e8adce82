"""The bench's null sink answers the MLflow calls real clients make, and counts what they sent.

The bench's sink rows are only worth their numbers if MLflow's own client and the
runtime's really ran against it (a call it did not know would make a client fail
or skip work, and look cheap). Here MLflow's fluent API, its async logging and
the runtime's REST client talk to a real sink process; nothing is stored.
"""
from __future__ import annotations

import pytest

from bench.sink import sink_stats, start_sink


@pytest.fixture(scope="module")
def sink(tmp_path_factory):
    proc, url = start_sink(tmp_path_factory.mktemp("sink"))
    yield url
    proc.stop()


def test_mlflow_fluent_client_runs_a_whole_run_against_the_sink(sink, clean_env):
    import mlflow

    mlflow.set_tracking_uri(sink)
    mlflow.set_experiment("sink-test")
    with mlflow.start_run() as run:
        for step in range(3):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metric("loss", 0.1, step=3, synchronous=False)
        mlflow.log_metrics({"a": 1.0, "b": 2.0}, step=0)
        mlflow.log_param("lr", 0.1)
        mlflow.set_tag("team", "x")
        mlflow.log_text("hello", "notes/hello.txt")
        mlflow.flush_async_logging()
    stats = sink_stats(sink)
    assert stats["unknown"] == {}, "every call the fluent API made is one the sink knows"
    assert stats["points"][run.info.run_id] == {"raw": 6, "distinct": 6, "distinct_fit": 6}
    assert mlflow.MlflowClient(sink).get_run(run.info.run_id).info.status == "FINISHED"
    assert any(path.startswith("/api/2.0/mlflow-artifacts/artifacts/") for path in stats["requests"])


def test_the_runtimes_rest_client_logs_a_batch_and_ends_the_run(sink, clean_env):
    from mlflow import MlflowClient

    from trainer_runtime.tracking.rest import MlflowRest

    client = MlflowClient(sink)
    experiment = client.get_experiment_by_name("sink-rest").experiment_id
    run_id = client.create_run(experiment).info.run_id
    rest = MlflowRest(sink)
    points = [{"key": f"m{i % 8}", "value": float(i), "timestamp": 0, "step": i // 8} for i in range(1000)]
    rest.log_batch(run_id, points, [], [], timeout=10)
    rest.log_batch(run_id, points[:8], [], [], timeout=10)  # sent again: raw counts it, distinct does not
    rest.update_run(run_id, "FINISHED", 1, timeout=10)
    found = sink_stats(sink)["points"][run_id]
    assert found == {"raw": 1008, "distinct": 1000, "distinct_fit": 1000}
    assert client.get_run(run_id).info.status == "FINISHED"


def test_a_call_the_sink_does_not_know_is_a_404_it_reports(sink):
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(f"{sink}/api/2.0/mlflow/registered-models/get?name=x", timeout=5)
    assert raised.value.code == 404
    assert sink_stats(sink)["unknown"].get("GET /api/2.0/mlflow/registered-models/get") == 1
