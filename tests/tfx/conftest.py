from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def legacy_keras(monkeypatch):
    monkeypatch.setenv("TF_USE_LEGACY_KERAS", "1")


def run_local(tmp_path: Path, data: Path, uri: str, *, epochs: int = 3, experiment: str | None = None,
              runtime: dict | None = None, pipeline_name: str | None = None, **kwargs):
    """Run CsvExampleGen -> Trainer on LocalDagRunner; returns (experiment name, pipeline root)."""
    from tfx import v1 as tfx

    from examples.retrieval.pipeline import create_pipeline

    experiment = experiment or f"e2e-{uuid.uuid4().hex[:8]}"
    custom = {"epochs": epochs, "api_token": "do-not-log-me",
              "trainer_runtime": {"tracking_uri": uri, "experiment_name": experiment, **(runtime or {})}}
    root = tmp_path / "root"
    pipeline = create_pipeline(pipeline_name or f"pipe-{uuid.uuid4().hex[:6]}", str(root), str(data), custom_config=custom,
                               metadata_path=str(tmp_path / "metadata.sqlite"), **kwargs)
    tfx.orchestration.LocalDagRunner().run(pipeline)
    return experiment, root


def only_dir(pattern_root: Path, name: str) -> Path:
    found = sorted(pattern_root.glob(f"Trainer/{name}/*"))
    assert len(found) == 1, found
    return found[0]


def status_dir(root: Path) -> Path:
    """Where the runtime puts status for a Trainer: next to model_run (``<model_run>-mlflow``)."""
    found = sorted(root.glob("Trainer/model_run/*-mlflow"))
    assert len(found) == 1, found
    return found[0]


def mlflow_run(uri: str, experiment: str):
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r}"
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return client, runs[0]


def history_steps(client, run_id: str, name: str) -> list[int]:
    return [m.step for m in sorted(client.get_metric_history(run_id, name), key=lambda m: m.step)]


@pytest.fixture
def tmp_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith(("MLFLOW_", "TRAINER_RUNTIME_")):
            monkeypatch.delenv(key)
    return monkeypatch
