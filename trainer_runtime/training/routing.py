"""MLflow's own API in user code, routed through the run's spool while a tracked run is open.

While the user's training runs, the fluent API (``mlflow.log_metric``,
``mlflow.log_artifact``, ``autolog``…) and ``MlflowClient()`` resolve the
tracking URI ``trainer-runtime://<run id>``. MLflow finds the store for that
scheme through its store-plugin entry point (``mlflow.tracking_store`` in
pyproject.toml), the same way it finds any third-party store; the store is
:class:`trainer_runtime.training.mlflow_plugins.RoutedStore`. Artifacts of the run
resolve ``trainer-runtime-artifacts:/<token>/…`` through the artifact-repository
entry point (``mlflow.artifact_repository``). No MLflow internals are patched.

This module holds the process's open routes (one per tracked run) and the
context manager that opens one; it imports no MLflow at import time.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator

from trainer_runtime.core import envvars

log = logging.getLogger(__name__)

SCHEME = "trainer-runtime"
ARTIFACT_SCHEME = "trainer-runtime-artifacts"
#: the environment MLflow's fluent API reads, set for the length of the user's training
FLUENT_ENV = (envvars.MLFLOW_TRACKING_URI, envvars.MLFLOW_REGISTRY_URI, envvars.MLFLOW_RUN_ID,
              envvars.MLFLOW_EXPERIMENT_ID)


def tracking_uri_for(run_id: str) -> str:
    return f"{SCHEME}://{run_id}"


def artifact_uri_for(token: str, subpath: str = "") -> str:
    return f"{ARTIFACT_SCHEME}:/{token}" + (f"/{subpath.strip('/')}" if subpath.strip("/") else "")


def parse_artifact_uri(uri: str) -> tuple[str, str]:
    """(token, path inside its root) of a ``trainer-runtime-artifacts:`` URI."""
    rest = uri[len(ARTIFACT_SCHEME) + 1:].lstrip("/")
    token, _, subpath = rest.partition("/")
    return token, subpath


@dataclass
class Route:
    """What an open run lends MLflow's API in user code: its ids, its logger and spool, its limits."""

    run_id: str
    experiment_id: str
    run_name: str | None
    tracking_uri: str          # the real server
    artifact_uri: str          # the run's real artifact root
    logger: Any                # the run's MetricsLogger
    send_timeout: float
    artifact_max_bytes: int
    start_time_ms: int = 0
    user_id: str = ""
    #: epoch keys the runtime's Keras callback logged, with their last step (``CallbackCore``)
    callback: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    latest: dict[str, Any] = field(default_factory=dict)
    #: the training has returned: the fluent run is being ended by the runtime, not by user code
    ending: bool = False

    def in_outage(self) -> float | None:
        return self.logger.in_outage()

    def spool_artifact(self, local_file: str, real_root: str, path: str) -> None:
        """Copy ``local_file`` into the spool now (the user may delete it right after) and queue it
        for ``<real_root>/<path>/<its name>``. A file over the limit is counted and not copied."""
        name = os.path.basename(local_file)
        size = os.path.getsize(local_file)
        if size > self.artifact_max_bytes:
            self.logger.counts.drop("artifact_too_large", name=name, detail=f"{size} bytes > artifact_max_mb ({self.artifact_max_bytes} bytes)")
            log.warning("artifact %s not logged: %d bytes is over artifact_max_mb (%d bytes); raise "
                        "TRAINER_RUNTIME_ARTIFACT_MAX_MB or upload it yourself", local_file, size,
                        self.artifact_max_bytes)
            return
        relative = f"artifacts/{uuid.uuid4().hex[:20]}"
        target = os.path.join(self.logger.artifact_dir, relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(local_file, target)
        self.logger.log_artifact_file(relative, real_root, path.strip("/"), name, size)


class _Routes:
    """The open routes, and every artifact root a token ever stood for (a repository MLflow cached
    may outlive its run: then it writes to the real root directly)."""

    def __init__(self) -> None:
        self.open: dict[str, Route] = {}
        self.roots: dict[str, tuple[str, str]] = {}  # token -> (real artifact root, real tracking URI)
        self.lock = threading.Lock()


ROUTES = _Routes()


def route_for(run_id: str) -> Route | None:
    return ROUTES.open.get(run_id)


def remember_root(token: str, real_root: str, tracking_uri: str) -> None:
    with ROUTES.lock:
        ROUTES.roots[token] = (real_root, tracking_uri)


def real_root(token: str) -> tuple[str, str] | None:
    return ROUTES.roots.get(token)


def plugins_installed() -> bool:
    """Whether MLflow can find this package's store and artifact plugins (it is installed as a
    distribution, as in the image and ``make env``; a bare source checkout on PYTHONPATH is not)."""
    from importlib.metadata import entry_points

    stores = {ep.name for ep in entry_points(group="mlflow.tracking_store")}
    repos = {ep.name for ep in entry_points(group="mlflow.artifact_repository")}
    return SCHEME in stores and ARTIFACT_SCHEME in repos


@contextlib.contextmanager
def routed(route: Route, enabled: bool = True) -> Iterator[bool]:
    """For its length, MLflow's API in this process logs to ``route``'s run through its spool.

    Yields whether routing is on: off when ``enabled`` is False (``route_mlflow``), and off with a
    warning when MLflow cannot find the plugins; the user's calls then go straight to the server
    (still attached to the run), as MLflow's client sends them."""
    import mlflow

    routing = enabled and plugins_installed()
    if enabled and not routing:
        log.warning("MLflow calls in your code go straight to %s with MLflow's own retries (minutes "
                    "in an outage): the trainer_runtime distribution's MLflow plugins are not installed "
                    "(pip install the package, not just its source)", route.tracking_uri)
    uri = tracking_uri_for(route.run_id) if routing else route.tracking_uri
    saved = {k: os.environ.get(k) for k in FLUENT_ENV}
    with ROUTES.lock:
        ROUTES.open[route.run_id] = route
        ROUTES.roots[route.run_id] = (route.artifact_uri, route.tracking_uri)
    os.environ.update({envvars.MLFLOW_TRACKING_URI: uri, envvars.MLFLOW_REGISTRY_URI: route.tracking_uri,
                       envvars.MLFLOW_RUN_ID: route.run_id, envvars.MLFLOW_EXPERIMENT_ID: route.experiment_id})
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(route.tracking_uri)
    try:
        yield routing
    finally:
        route.ending = True
        try:
            _end_fluent_runs(mlflow)
        finally:
            with ROUTES.lock:
                ROUTES.open.pop(route.run_id, None)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            mlflow.set_tracking_uri(saved[envvars.MLFLOW_TRACKING_URI] or route.tracking_uri)
            mlflow.set_registry_uri(saved[envvars.MLFLOW_REGISTRY_URI] or saved[envvars.MLFLOW_TRACKING_URI]
                                    or route.tracking_uri)


def _end_fluent_runs(mlflow: Any) -> None:
    """A fluent run the user left open is ours: end it (the store leaves the run's status to the
    runtime, which decides it afterwards) so it is not "already active" later. MLflow's async queues
    (``synchronous=False``) drain into the store first, which only queues: nothing here waits on the
    network."""
    if mlflow.active_run() is not None:
        try:  # it starts a run when none is active: only with ours open
            mlflow.flush_artifact_async_logging()
        except Exception:  # a user's failed async upload is theirs; the close must go on
            log.exception("MLflow's flush_artifact_async_logging failed")
    try:
        mlflow.flush_async_logging()
    except Exception:
        log.exception("MLflow's flush_async_logging failed")
    while mlflow.active_run() is not None:
        mlflow.end_run()
