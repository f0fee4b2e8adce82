"""The serving model in MLflow: where it is (by reference), its signatures, its registry version.

After a Trainer succeeded, the run gets two small artifacts under ``model/``:
``model_reference.json`` (the SavedModel's and the model_run's URIs, never a copy
of the model) and ``signature.json`` (each serving signature's inputs and
outputs: names, dtypes, shapes, read from ``saved_model.pb`` without loading
the graph), plus ``trainer_runtime.serving_model_uri`` and
``trainer_runtime.model_run_uri`` tags. With ``register_model_name``, a Model
Registry version whose source is the SavedModel's URI, tagged with the run,
the TFX pipeline run and the Vertex job.

All of it runs inside one budget (``model_record_timeout``), on bounded calls
(:mod:`trainer_runtime.tracking.rest`); whatever fails is a warning and a line in
the status (``model``, ``model_registry``), never a failed training.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from trainer_runtime.core.bounded import StillRunning, call_within
from trainer_runtime.tracking.rest import MlflowRest, RestError

log = logging.getLogger(__name__)

ARTIFACT_DIR = "model"
REFERENCE_FILE = "model_reference.json"
SIGNATURE_FILE = "signature.json"
SERVING_TAG = "trainer_runtime.serving_model_uri"
MODEL_RUN_TAG = "trainer_runtime.model_run_uri"
#: run/pipeline tags copied onto a registered version, so the registry says where it came from
VERSION_TAGS = ("tfx.pipeline", "tfx.pipeline_run_id", "tfx.component", "vertex.pipeline_job_id",
                "vertex.task_name", "vertex.custom_job_id", "trainer_runtime.vertex_pipeline_url")


def record(ctx: Any, serving_model_uri: str, model_run_uri: str | None, tags: Mapping[str, str],
           api_factory: Callable[[str, float], MlflowRest] = MlflowRest) -> None:
    """Record the model of a completed training on ``ctx``'s run, within ``ctx.config.model_record_timeout``.

    Never raises. Puts ``model`` (and with a registry name, ``model_registry``) into
    ``ctx.extra_status`` and the registered version into ``ctx.extra_info``.
    """
    config = ctx.config
    if not config.record_model:
        return
    budget = config.model_record_timeout
    started = time.monotonic()
    state: dict[str, Any] = {"model": {"state": "started", "serving_model_uri": serving_model_uri,
                                       "model_run_uri": model_run_uri}}
    if config.register_model_name:
        state["model_registry"] = {"state": "started", "name": config.register_model_name}
    # The logger's queue takes the tags at once (spooled, sent or replayed like every point).
    ctx.logger.set_tags({SERVING_TAG: serving_model_uri, **({MODEL_RUN_TAG: model_run_uri} if model_run_uri else {})})

    def work() -> None:
        api = api_factory(ctx.tracking_uri, min(config.request_timeout, budget))
        _record(api, ctx, serving_model_uri, model_run_uri, tags, state)

    try:
        call_within(budget, _guarded(work, state), "trainer-runtime-model")
    except StillRunning:
        pass  # reported below, per part, as a timeout
    seconds = round(time.monotonic() - started, 3)
    for key in ("model", "model_registry"):
        if key in state and state[key]["state"] in ("started", "recording", "registering"):
            state[key] = {**state[key], "state": "timeout",
                          "reason": f"not done within model_record_timeout={budget:g}s (server slow or down?)"}
            log.warning("%s: not recorded within %gs (the MLflow server is slow or down?); the training "
                        "result is unaffected; raise model_record_timeout to wait longer", key, budget)
    state["model"]["seconds"] = seconds
    ctx.extra_status.update(state)
    registry = state.get("model_registry", {})
    if registry.get("state") == "registered":
        ctx.extra_info["model_version"] = {k: registry[k] for k in ("name", "version", "source")}


def _guarded(work: Callable[[], None], state: dict[str, Any]) -> Callable[[], None]:
    def run() -> None:
        try:
            work()
        except Exception as exc:  # a bug here must not end a completed training
            log.exception("recording the model failed")
            for key in ("model", "model_registry"):
                if key in state and state[key]["state"] not in ("recorded", "registered", "unavailable", "failed"):
                    state[key] = {**state[key], "state": "failed", "reason": f"{type(exc).__name__}: {exc}"}
    return run


def _record(api: MlflowRest, ctx: Any, serving_model_uri: str, model_run_uri: str | None,
            tags: Mapping[str, str], state: dict[str, Any]) -> None:
    model = state["model"]
    model["state"] = "recording"
    signatures = read_signatures(serving_model_uri)
    if "error" in signatures:
        log.warning("could not read the SavedModel's signatures from %s: %s", serving_model_uri, signatures["error"])
    reference = {"serving_model_uri": serving_model_uri, "model_run_uri": model_run_uri,
                 "format": "tf_saved_model", "run_id": ctx.run_id,
                 "tensorboard_log_dir": tags.get("trainer_runtime.tensorboard_log_dir"),
                 **{k: v for k, v in tags.items() if k in VERSION_TAGS}}
    try:
        artifact_uri = getattr(ctx, "artifact_uri", None) or api.artifact_uri(ctx.run_id)
        model["artifacts"] = [
            api.put_artifact(artifact_uri, f"{ARTIFACT_DIR}/{name}",
                             (json.dumps(content, indent=2, sort_keys=True) + "\n").encode(), "application/json")
            for name, content in ((REFERENCE_FILE, reference), (SIGNATURE_FILE, signatures))]
        model["state"] = "recorded"
        model["signatures"] = sorted(signatures.get("signatures", {}))
    except RestError as exc:
        model.update(state="failed", reason=str(exc))
        log.warning("the model's reference and signature are not on the run: %s; the training result is "
                    "unaffected (the serving model is at %s)", exc, serving_model_uri)
    if "model_registry" in state:
        state["model_registry"]["state"] = "registering"
        state["model_registry"] = register(api, ctx.config.register_model_name, ctx.run_id, serving_model_uri,
                                           {**{k: v for k, v in tags.items() if k in VERSION_TAGS},
                                            "mlflow.source.run_id": ctx.run_id, SERVING_TAG: serving_model_uri})


def is_remote(uri: str) -> bool:
    """A URI others can read (gs://, s3://, …), not a path on this machine's disk."""
    scheme = urlsplit(uri).scheme
    return len(scheme) > 1 and scheme != "file"


def register(api: MlflowRest, name: str, run_id: str, serving_model_uri: str, tags: Mapping[str, str]
             ) -> dict[str, Any]:
    """Register a new version of ``name`` and return what the status records. Never raises.

    The version's source is the SavedModel's URI. A path on this machine's disk
    (LocalDagRunner with a local pipeline root) is refused by every MLflow server
    (a registry source may be local only inside the run's own artifacts), so
    there the source is the run's ``model/`` reference (``runs:/<run>/model``),
    which names the path, and the version's ``trainer_runtime.serving_model_uri``
    tag carries it too.
    """
    source = serving_model_uri if is_remote(serving_model_uri) else f"runs:/{run_id}/{ARTIFACT_DIR}"
    result: dict[str, Any] = {"name": name}
    try:
        try:
            api.call("/api/2.0/mlflow/registered-models/create", {"name": name})
        except RestError as exc:
            if exc.code != "RESOURCE_ALREADY_EXISTS":
                raise
        version = api.call("/api/2.0/mlflow/model-versions/create", {
            "name": name, "source": source, "run_id": run_id,
            "tags": [{"key": k, "value": str(v)} for k, v in tags.items()],
            "description": f"SavedModel {serving_model_uri}"})["model_version"]
    except RestError as exc:
        if exc.endpoint_missing:
            reason = (f"the MLflow server has no Model Registry ({exc}); run it with a database backend "
                      "store (mlflow server --backend-store-uri postgresql://… or sqlite:///…) and let the "
                      "registry's API through any proxy, or unset register_model_name")
            log.warning("model %r not registered: %s; the training result is unaffected", name, reason)
            return {**result, "state": "unavailable", "reason": reason}
        log.warning("model %r not registered: %s; the training result is unaffected", name, exc)
        return {**result, "state": "failed", "reason": str(exc)}
    log.info("registered model %r version %s (source %s)", name, version["version"], version.get("source", source))
    return {**result, "state": "registered", "version": str(version["version"]),
            "source": version.get("source", source), "serving_model_uri": serving_model_uri}


def read_signatures(saved_model_dir: str) -> dict[str, Any]:
    """The SavedModel's signatures from ``saved_model.pb`` (the proto alone; no graph is loaded).

    Returns ``{"signatures": {name: {"method": …, "inputs": {…}, "outputs": {…}}}}``,
    each tensor as ``{"name": <tensor>, "dtype": "string", "shape": [-1, 10] | None}``;
    ``{"error": …}`` when it cannot be read.
    """
    try:
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2

        path = saved_model_dir.rstrip("/") + "/saved_model.pb"
        proto = saved_model_pb2.SavedModel()
        with tf.io.gfile.GFile(path, "rb") as fh:
            proto.ParseFromString(fh.read())
    except Exception as exc:  # noqa: BLE001 - any reason is reported, none is fatal
        return {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}

    def tensors(infos: Any) -> dict[str, Any]:
        out = {}
        for key, info in sorted(infos.items()):
            shape = None if info.tensor_shape.unknown_rank else [d.size for d in info.tensor_shape.dim]
            dtype = tf.dtypes.as_dtype(info.dtype).name if info.dtype else None
            out[key] = {"name": info.name, "dtype": dtype, "shape": shape}
        return out

    signatures: dict[str, Any] = {}
    for meta_graph in proto.meta_graphs:
        for key, signature in meta_graph.signature_def.items():
            if key.startswith("__"):  # TF's internal ones (__saved_model_init_op)
                continue
            signatures[key] = {"method": signature.method_name, "inputs": tensors(signature.inputs),
                               "outputs": tensors(signature.outputs)}
    return {"saved_model": saved_model_dir, "signatures": signatures}
