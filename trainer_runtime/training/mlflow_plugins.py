"""The MLflow plugins behind :mod:`trainer_runtime.training.routing`: a tracking store and an artifact repository.

MLflow loads them through its plugin entry points (pyproject.toml):
``mlflow.tracking_store`` ``trainer-runtime`` -> :func:`build_store`, and
``mlflow.artifact_repository`` ``trainer-runtime-artifacts`` -> :class:`SpoolArtifactRepository`.

:class:`RoutedStore` is MLflow's own ``RestStore`` for the run's real server, with:

- writes to the tracked run (metrics, params, tags, batches, dataset inputs) queued on the
  run's logger: the call returns at once, the sender delivers them on its bounded policy;
  a status change (``end_run``) is left to the runtime, which decides the run's outcome;
- reads of the tracked run answered from what the runtime holds (no round trip, no stall);
- every other call (other runs, searches, metric histories, logged models) tried on MLflow's
  client but waited for at most ``send_timeout``; during an outage, or past it, it raises
  :class:`MlflowUnavailableError` (an ``MlflowException``) naming the outage.

This module imports MLflow: only MLflow's plugin loader and the routing's own code import it.
"""
from __future__ import annotations

import logging
import os
from typing import Any

from mlflow.entities import Metric, Param, Run, RunData, RunInfo, RunStatus, RunTag
from mlflow.entities.lifecycle_stage import LifecycleStage
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repo import ArtifactRepository
from mlflow.store.tracking.rest_store import RestStore

from trainer_runtime.core.bounded import StillRunning, call_within
from trainer_runtime.core.redact import strip_credentials
from trainer_runtime.training import routing

log = logging.getLogger(__name__)


class MlflowUnavailableError(MlflowException):
    """A read (or a call the runtime cannot queue) that the MLflow server did not answer in time."""


def _unavailable(route: routing.Route, what: str, why: str) -> MlflowUnavailableError:
    return MlflowUnavailableError(
        f"{what}: the MLflow server at {strip_credentials(route.tracking_uri)} {why}. What your code "
        f"logs is kept in the run's spool and sent when it answers; reads cannot wait (bounded by "
        f"send_timeout={route.send_timeout:g}s). Catch mlflow.exceptions.MlflowException around "
        f"reads you can do without.")


def _bounded(route: routing.Route, what: str, call: Any) -> Any:
    """``call()`` on MLflow's client, waited for at most ``send_timeout`` (``core.bounded``: its hidden
    retries go on, unobserved); at once MlflowUnavailableError during a known outage."""
    down = route.in_outage()
    if down is not None:
        raise _unavailable(route, what, f"has not answered for {down:.0f}s")
    try:
        return call_within(route.send_timeout, call, "trainer-runtime-read")
    except StillRunning as exc:
        raise _unavailable(route, what, f"did not answer within {route.send_timeout:g}s") from exc
    except MlflowException as exc:
        if exc.error_code not in ("INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE"):
            raise  # the server's answer (e.g. RESOURCE_DOES_NOT_EXIST): MLflow's own error
        raise _unavailable(route, what, f"failed: {_first_line(exc)}") from exc
    except Exception as exc:
        raise _unavailable(route, what, f"failed: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def build_store(store_uri: str, artifact_uri: str | None = None) -> "RoutedStore":
    """MLflow's store builder for ``trainer-runtime://<run id>``."""
    run_id = store_uri.split("://", 1)[-1].strip("/")
    route = routing.route_for(run_id)
    if route is None:
        raise MlflowException(
            f"{store_uri} is the tracking URI of a run trainer-runtime tracks, and that run is not open "
            "in this process (it has ended); set MLFLOW_TRACKING_URI to the server's URL for calls "
            "after the training")
    return RoutedStore(route)


class RoutedStore(RestStore):
    def __init__(self, route: routing.Route) -> None:
        from functools import partial

        from mlflow.utils.credentials import get_default_host_creds

        super().__init__(partial(get_default_host_creds, route.tracking_uri))
        self.route = route
        self.run_id = route.run_id

    # --- the tracked run: queued on the logger, never waiting ------------------------------------
    def log_metric(self, run_id, metric):
        if run_id != self.run_id:
            return super().log_metric(run_id, metric)
        self._metrics(((metric.key, metric.value, metric.timestamp, metric.step),))

    def log_param(self, run_id, param):
        if run_id != self.run_id:
            return super().log_param(run_id, param)
        self._keep(params={param.key: param.value})

    def set_tag(self, run_id, tag):
        if run_id != self.run_id:
            return super().set_tag(run_id, tag)
        self._keep(tags={tag.key: tag.value})

    def log_batch(self, run_id, metrics, params, tags):
        if run_id != self.run_id:
            return super().log_batch(run_id, metrics, params, tags)
        points = [(m.key, m.value, m.timestamp, m.step) for m in metrics]
        self._metrics(points, {p.key: p.value for p in params}, {t.key: t.value for t in tags})

    def log_batch_async(self, run_id, metrics, params, tags):
        """``synchronous=False`` for the tracked run: the synchronous path already only queues, so
        MLflow's own async queue (a thread the end of the run would wait ~1 s to stop) is skipped."""
        if run_id != self.run_id:
            return super().log_batch_async(run_id, metrics, params, tags)
        from mlflow.utils.async_logging.run_operations import RunOperations

        self.log_batch(run_id, metrics, params, tags)
        return RunOperations([])

    def log_inputs(self, run_id, datasets=None, models=None):
        if run_id != self.run_id or models:
            return super().log_inputs(run_id, datasets, models)
        from google.protobuf.json_format import MessageToDict

        if datasets:
            self.route.logger.log_inputs([MessageToDict(d.to_proto(), preserving_proto_field_name=True)
                                          for d in datasets])

    def update_run_info(self, run_id, run_status, end_time, run_name):
        if run_id != self.run_id:
            return super().update_run_info(run_id, run_status, end_time, run_name)
        if run_status is not None and RunStatus.to_string(run_status) != "RUNNING" and not self.route.ending:
            log.info("%s from your code left to the runtime: it ends run %s with the training's outcome",
                     RunStatus.to_string(run_status), run_id)
        if run_name:
            self._keep(tags={"mlflow.runName": run_name})
            self.route.run_name = run_name
        return self._info()

    def get_run(self, run_id):
        if run_id != self.run_id:
            return super().get_run(run_id)
        route = self.route
        with route.lock:
            data = RunData(metrics=[Metric(k, *point) for k, point in route.latest.items()],
                           params=[Param(k, v) for k, v in route.params.items()],
                           tags=[RunTag(k, v) for k, v in route.tags.items()])
        return Run(self._info(), data)

    # --- logged models: their files go through the spool too ------------------------------------
    def create_logged_model(self, *args, **kwargs):
        return self._routed_model(super().create_logged_model(*args, **kwargs))

    def get_logged_model(self, *args, **kwargs):
        return self._routed_model(super().get_logged_model(*args, **kwargs))

    def finalize_logged_model(self, *args, **kwargs):
        return self._routed_model(super().finalize_logged_model(*args, **kwargs))

    # --- everything else: MLflow's client, bounded ------------------------------------------------
    def _call_endpoint(self, *args, **kwargs):
        return _bounded(self.route, "MLflow call", lambda: super(RoutedStore, self)._call_endpoint(*args, **kwargs))

    def _routed_model(self, model: Any) -> Any:
        token = f"model-{model.model_id}"
        routing.remember_root(token, model.artifact_location, self.route.tracking_uri)
        model.artifact_location = routing.artifact_uri_for(token)
        return model

    def _metrics(self, points, params=None, tags=None) -> None:
        route = self.route
        callback = route.callback
        if callback is not None:  # the runtime's Keras callback logs epochs too: one point per key and step
            kept = [p for p in points if not callback.claimed(p[0], p[3])]
            if len(kept) != len(points):
                _duplicates(route, len(points) - len(kept), points[0][0])
            points = kept
        if points:
            with route.lock:
                for key, value, ts, step in points:
                    route.latest[key] = (value, ts, step)
        route.logger.log_user(list(points), params, tags)
        if params or tags:
            self._remember(params, tags)

    def _keep(self, params=None, tags=None) -> None:
        self.route.logger.log_user([], params, tags)
        self._remember(params, tags)

    def _remember(self, params, tags) -> None:
        with self.route.lock:
            self.route.params.update({k: str(v) for k, v in (params or {}).items()})
            self.route.tags.update({k: str(v) for k, v in (tags or {}).items()})

    def _info(self) -> RunInfo:
        route = self.route
        return RunInfo(run_id=route.run_id, experiment_id=route.experiment_id, user_id=route.user_id,
                       status="RUNNING", start_time=route.start_time_ms, end_time=None,
                       lifecycle_stage=LifecycleStage.ACTIVE,
                       artifact_uri=routing.artifact_uri_for(route.run_id), run_name=route.run_name)


def _duplicates(route: routing.Route, n: int, key: str) -> None:
    if route.logger.counts.drop("duplicate_metric", n, name=key, detail="the runtime's Keras callback logged it"):
        log.info("%r at a step the runtime's callback already logged is dropped (one point per key and "
                 "step; counted as rejected.duplicate_metric)", key)


class SpoolArtifactRepository(ArtifactRepository):
    """Artifacts of a routed run (or of a model it logs): copied into the spool at the call, uploaded
    by the run's sender. Listing and downloading go to the real store, bounded."""

    def __init__(self, artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(artifact_uri, tracking_uri=tracking_uri, registry_uri=registry_uri)
        self.token, self.subpath = routing.parse_artifact_uri(artifact_uri)
        known = routing.real_root(self.token)
        if known is None:
            raise MlflowException(f"{artifact_uri}: no artifact root is known for {self.token!r} in this "
                                  "process (the run that routed it is not open here)")
        root, self.real_tracking_uri = known
        self.real_uri = root.rstrip("/") + (f"/{self.subpath}" if self.subpath else "")

    def _route(self) -> routing.Route | None:
        run_id = self.token if not self.token.startswith("model-") else None
        if run_id is not None:
            return routing.route_for(run_id)
        open_routes = list(routing.ROUTES.open.values())
        return open_routes[0] if len(open_routes) == 1 else None

    def _real(self) -> ArtifactRepository:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        return get_artifact_repository(self.real_uri, tracking_uri=self.real_tracking_uri)

    def log_artifact(self, local_file, artifact_path=None):
        route = self._route()
        if route is None:  # the run has ended: MLflow's own upload, as without the runtime
            return self._real().log_artifact(local_file, artifact_path)
        route.spool_artifact(local_file, self.real_uri, artifact_path or "")

    def log_artifacts(self, local_dir, artifact_path=None):
        route = self._route()
        if route is None:
            return self._real().log_artifacts(local_dir, artifact_path)
        for folder, _, files in sorted(os.walk(local_dir)):
            relative = os.path.relpath(folder, local_dir)
            inner = "" if relative == "." else relative.replace(os.sep, "/")
            path = "/".join(p for p in ((artifact_path or "").strip("/"), inner) if p)
            for name in sorted(files):
                route.spool_artifact(os.path.join(folder, name), self.real_uri, path)

    def list_artifacts(self, path=None):
        route = self._route()
        real = self._real()
        if route is None:
            return real.list_artifacts(path)
        return _bounded(route, "list artifacts", lambda: real.list_artifacts(path))

    def _download_file(self, remote_file_path, local_path):
        route = self._route()
        real = self._real()
        if route is None:
            return real._download_file(remote_file_path, local_path)
        return _bounded(route, "download an artifact", lambda: real._download_file(remote_file_path, local_path))

    def delete_artifacts(self, artifact_path=None):
        raise MlflowException("deleting artifacts of a run trainer-runtime tracks is not supported "
                              "while it trains")


__all__ = ["RoutedStore", "SpoolArtifactRepository", "MlflowUnavailableError", "build_store"]
