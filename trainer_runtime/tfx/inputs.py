"""Data lineage: the Trainer's input artifacts as MLflow dataset inputs (``log_inputs``).

Each of ``examples``, ``transform_graph``, ``schema``, ``base_model`` and
``hyperparameters`` the Trainer got becomes one dataset on the run: its name (the
input's key), its URI as the source, its TFX artifact id and type, its splits in
the profile, a digest of URI and artifact id, and the input tag
``mlflow.data.context=training``. MLflow's UI lists them under "Datasets used".

The artifacts come from the executor's ``input_dict`` (TrackedExecutor's own, or
the stock executor's found on the call stack by the run_fn shim); without one,
what FnArgs says is rebuilt (file patterns, schema path, …, without artifact ids).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from typing import Any, Iterable, Mapping

log = logging.getLogger(__name__)

#: the Trainer's inputs recorded as datasets, in this order
INPUT_KEYS = ("examples", "transform_graph", "schema", "base_model", "hyperparameters")
CONTEXT_TAG = "mlflow.data.context"
_SPLIT_DIR = re.compile(r"^Split-(?P<split>[^/]+)$")


def datasets_from_artifacts(input_dict: Mapping[str, Iterable[Any]]) -> list[dict]:
    """MLflow ``DatasetInput`` messages (as JSON) for the TFX artifacts in ``input_dict``."""
    from tfx.types import artifact_utils

    datasets = []
    for key in INPUT_KEYS:
        for artifact in input_dict.get(key) or ():
            splits = None
            if "split_names" in (getattr(artifact, "PROPERTIES", None) or {}):
                splits = artifact_utils.decode_split_names(artifact.split_names) or None
            datasets.append(dataset(key, artifact.uri, artifact_id=artifact.id or None,
                                    type_name=artifact.type_name, splits=splits))
    return datasets


def datasets_from_fn_args(fn_args: Any) -> list[dict]:
    """What FnArgs alone says: file patterns per split, schema path, transform output, base model."""
    datasets = []
    patterns = list(getattr(fn_args, "train_files", None) or []) + list(getattr(fn_args, "eval_files", None) or [])
    roots: dict[str, list[str]] = {}
    for pattern in patterns:
        split_dir = os.path.dirname(pattern.rstrip("/"))
        match = _SPLIT_DIR.match(os.path.basename(split_dir))
        root = os.path.dirname(split_dir) if match else split_dir
        splits = roots.setdefault(root, [])
        if match and match["split"] not in splits:
            splits.append(match["split"])
    for root, splits in roots.items():
        datasets.append(dataset("examples", root, type_name="Examples", splits=splits or None))
    for key, attr, type_name in (("transform_graph", "transform_output", "TransformGraph"),
                                 ("schema", "schema_path", "Schema"), ("base_model", "base_model", "Model")):
        uri = getattr(fn_args, attr, None)
        if uri:
            datasets.append(dataset(key, uri, type_name=type_name))
    return datasets


def dataset(name: str, uri: str, *, artifact_id: int | None = None, type_name: str | None = None,
            splits: list[str] | None = None) -> dict:
    """One ``DatasetInput`` as MLflow's REST API takes it (``runs/log-inputs``)."""
    scheme = uri.split("://", 1)[0] if "://" in uri else "local"
    source = {"uri": uri, **({"tfx_artifact_id": artifact_id} if artifact_id else {})}
    profile = {k: v for k, v in (("splits", splits), ("tfx_type", type_name), ("tfx_artifact_id", artifact_id))
               if v}
    digest = hashlib.sha256(f"{uri}#{artifact_id or ''}".encode()).hexdigest()[:16]
    return {"tags": [{"key": CONTEXT_TAG, "value": "training"}],
            "dataset": {"name": name, "digest": digest, "source_type": "gcs" if scheme == "gs" else scheme,
                        "source": json.dumps(source, sort_keys=True), "profile": json.dumps(profile, sort_keys=True)}}


def log_datasets(ctx: Any, fn_args: Any, input_dict: Mapping[str, Any] | None) -> None:
    """Log the Trainer's inputs on ``ctx``'s run, one bounded call. Never raises; the status says how it went."""
    if not ctx.config.log_datasets:
        return
    from trainer_runtime.tracking.rest import MlflowRest, RestError

    try:
        datasets = datasets_from_artifacts(input_dict) if input_dict else datasets_from_fn_args(fn_args)
    except Exception as exc:  # noqa: BLE001 - lineage is a bonus; training goes on
        log.warning("could not describe the Trainer's inputs as datasets: %s", exc)
        ctx.extra_status["datasets"] = {"state": "failed", "reason": str(exc)}
        return
    if not datasets:
        return
    try:
        # Before training starts: a slow server may cost it one short request, no more.
        timeout = min(ctx.config.request_timeout, ctx.config.send_timeout)
        MlflowRest(ctx.tracking_uri, timeout).log_inputs(ctx.run_id, datasets)
        ctx.extra_status["datasets"] = {"state": "logged", "names": [d["dataset"]["name"] for d in datasets]}
    except RestError as exc:
        log.warning("the Trainer's inputs are not on the run as datasets: %s; training goes on", exc)
        ctx.extra_status["datasets"] = {"state": "failed", "reason": str(exc)}
