"""What a run touches in the outside world (environment, clock, MLflow, storage), in one object
tests swap parts of; and where a run's status goes when nothing says otherwise."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from trainer_runtime.core import envvars
from trainer_runtime.status.storage import TextDir, open_dir
from trainer_runtime.tracking import auth
from trainer_runtime.tracking.preflight import mlflow_probe


def _mlflow_client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


@dataclass
class Deps:
    """What the session touches in the outside world; tests swap parts of it."""

    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    probe_factory: Callable[[str], Any] = mlflow_probe
    client_factory: Callable[[str], Any] = _mlflow_client
    token_source_factory: Callable[..., auth.GoogleIdTokenSource] = auth.GoogleIdTokenSource
    open_dir: Callable[[str], TextDir] = open_dir
    #: after a preemption signal, leave the process at once once the run is closed (tests that
    #: signal their own process turn it off).
    exit_after_signal: bool = True


def default_status_dir(env: Mapping[str, str]) -> str:
    """Standalone default: Vertex's $AIP_MODEL_DIR, else the working directory."""
    return env.get(envvars.AIP_MODEL_DIR) or os.getcwd()
