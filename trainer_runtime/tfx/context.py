"""What the runtime can learn about where a Trainer runs: params and tags for MLflow."""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Mapping

from trainer_runtime.core.config import CUSTOM_CONFIG_KEY
from trainer_runtime.core.redact import is_secret_key


def vertex_ids_from_output_file(output_file: str) -> dict[str, str]:
    """Vertex writes executor output to {root}/{project_number}/{job_id}/{task}_{uuid}/executor_output.json."""
    parts = output_file.rstrip("/").split("/")
    if len(parts) < 4 or parts[-1] != "executor_output.json":
        return {}
    task_dir, job_id = parts[-2], parts[-3]
    task, _, task_uuid = task_dir.rpartition("_")
    return {"vertex.pipeline_job_id": job_id, "vertex.task_name": task or task_dir,
            "vertex.task_id": task_uuid}


def vertex_ids(executor_context: Any) -> dict[str, str]:
    """Job and task ids under kubeflow_v2_run_executor, whose context has no pipeline_info but a
    tmp_dir of ``<task root>/.temp`` (the task root holds executor_output.json)."""
    if executor_context is None or getattr(executor_context, "pipeline_info", None) is not None:
        return {}
    tmp_dir = (getattr(executor_context, "_tmp_dir", None) or "").rstrip("/")
    if os.path.basename(tmp_dir) != ".temp":
        return {}
    return vertex_ids_from_output_file(os.path.dirname(tmp_dir) + "/executor_output.json")


def tags_for(executor_context: Any) -> dict[str, str]:
    """Where the Trainer runs: TFX pipeline/component/run and Vertex job/task ids."""
    tags = {"trainer_runtime.path": "tfx"}
    info = getattr(executor_context, "pipeline_info", None)
    if info is not None and info.id:
        tags["tfx.pipeline"] = info.id
    node = getattr(executor_context, "pipeline_node", None)
    if node is not None and node.node_info.id:
        tags["tfx.component"] = node.node_info.id
    run_id = getattr(executor_context, "pipeline_run_id", None)
    if run_id:
        tags["tfx.pipeline_run_id"] = str(run_id)
    tags.update(vertex_ids(executor_context))
    if "vertex.task_name" in tags:
        tags.setdefault("tfx.component", tags["vertex.task_name"])
    return tags


def params_for(fn_args: Any) -> dict[str, Any]:
    """Hyperparameters, train/eval steps and custom_config (minus our section and secrets)."""
    params: dict[str, Any] = {"tfx.train_steps": fn_args.train_steps, "tfx.eval_steps": fn_args.eval_steps}
    hyperparameters = getattr(fn_args, "hyperparameters", None) or {}
    values = hyperparameters.get("values", hyperparameters) if isinstance(hyperparameters, dict) else {}
    for key, value in values.items():
        params[f"hp.{key}"] = value
    for key, value in (fn_args.custom_config or {}).items():
        if key == CUSTOM_CONFIG_KEY or is_secret_key(key):
            continue
        params[f"custom_config.{key}"] = json.dumps(value) if isinstance(value, (dict, list)) else value
    return {k: v for k, v in params.items() if v is not None}


def pipeline_name(executor_context: Any) -> str | None:
    info = getattr(executor_context, "pipeline_info", None)
    if info is not None and info.id:
        return info.id
    job = vertex_ids(executor_context).get("vertex.pipeline_job_id")
    return job.rsplit("-", 1)[0] if job and "-" in job else job


def default_run_name(pipeline: str | None, tags: Mapping[str, str], started: float) -> str:
    """``<pipeline>-<component>-<UTC time>``, e.g. ``recommender-Trainer-20261123T120000Z``."""
    parts = [part for part in (pipeline, tags.get("tfx.component")) if part] or ["trainer"]
    return "-".join([*parts, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))])


def running_executor_context() -> Any:
    """The context of the TFX executor that is calling us, found on the call stack, or None.

    For the run_fn shim, which TFX calls with FnArgs alone: the stock executor's
    ``Do`` is on the stack, and its context says which pipeline, component and run
    (or Vertex job and task) this is, exactly as TrackedExecutor sees it.
    """
    from tfx.dsl.components.base.base_executor import BaseExecutor

    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, BaseExecutor):
            return getattr(candidate, "_context", None)
        frame = frame.f_back
    return None


def running_executor_inputs() -> Any:
    """The ``input_dict`` of the TFX executor's ``Do`` that is calling us (found like
    ``running_executor_context``), or None: for the run_fn shim, which sees only FnArgs."""
    from tfx.dsl.components.base.base_executor import BaseExecutor

    frame = sys._getframe(1)
    while frame is not None:
        if isinstance(frame.f_locals.get("self"), BaseExecutor) and "input_dict" in frame.f_locals:
            return frame.f_locals["input_dict"]
        frame = frame.f_back
    return None


def status_dir_for(model_run_dir: str) -> str:
    """Next to the model_run output: ``<model_run>-mlflow``.

    Not inside it: TFX's portable launcher (LocalDagRunner) deletes a failed
    execution's output dirs, which would take the failure's status with them.
    """
    return model_run_dir.rstrip("/") + "-mlflow"


def env() -> Mapping[str, str]:
    return os.environ
