"""Vertex AI Training through TFX's extension, tracked: ``TrackedVertexTrainingExecutor``.

TFX's ``tfx.extensions.google_cloud_ai_platform`` Trainer launches a Vertex
CustomJob whose replicas (every worker pool) all run
``python -m tfx.scripts.run_executor --executor_class_path <class> …`` with
``TF_CONFIG`` set; its stock ``GenericExecutor`` names TFX's own, untracked
Trainer executor there. This one launches the same CustomJob with
``TrackedExecutor`` instead: the chief replica tracks the run (preflight,
callback, status) and every other replica records how it ended beside the
chief's status (``trainer_runtime.run.cluster``/``replica``).

Use it as ``Trainer(custom_executor_spec=ExecutorClassSpec(TrackedVertexTrainingExecutor))``;
the ``default_commands`` forwarder swaps it in for the extension's own launcher.
It also gives every worker pool two environment variables, unless the pool sets them:
the run key of the pipeline task that launched the job (``TRAINER_RUNTIME_RUN_KEY``),
so that a retried task continues its run although each attempt is a new CustomJob,
and the pipeline's name as the default experiment (``MLFLOW_EXPERIMENT_NAME``),
as TrackedExecutor has it. The run itself is opened by the chief, not here.
"""
from __future__ import annotations

import copy
import logging
from typing import Any, Dict, List

from tfx import types
from tfx.extensions.google_cloud_ai_platform.constants import ENABLE_VERTEX_KEY, VERTEX_REGION_KEY
from tfx.extensions.google_cloud_ai_platform.trainer import executor as launcher
from tfx.types import standard_component_specs
from tfx.utils import json_utils

from trainer_runtime.core import envvars
from trainer_runtime.core.errors import ConfigError
from trainer_runtime.tfx import context
from trainer_runtime.tfx.executor import TrackedExecutor
from trainer_runtime.tracking import attempts

log = logging.getLogger(__name__)

EXAMPLE = ('custom_config={"ai_platform_training_args": {"project": "my-project", "job_spec": {'
           '"worker_pool_specs": [{"machine_spec": {"machine_type": "n1-standard-8"}, "replica_count": 1, '
           '"container_spec": {"image_uri": "…/trainer-runtime:v0.1.0"}}, …]}}, '
           '"ai_platform_enable_vertex": True, "ai_platform_vertex_region": "us-central1", "trainer_runtime": {…}}')


class TrackedVertexTrainingExecutor(launcher.GenericExecutor):
    """TFX's Vertex AI Training launcher, with ``TrackedExecutor`` on every replica."""

    def _GetExecutorClass(self):
        return TrackedExecutor

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        ctx = getattr(self, "_context", None)
        env = replica_env(context.tags_for(ctx), context.pipeline_name(ctx), context.env())
        return super().Do(input_dict, output_dict, with_replica_env(exec_properties, env))


def replica_env(tags: Dict[str, str], pipeline: str | None, env: Any) -> Dict[str, str]:
    """What every replica gets from the launching task: its run key and the default experiment."""
    out: Dict[str, str] = {}
    key = attempts.run_key(env.get(envvars.RUN_KEY), tags, env)
    if key:
        out[envvars.RUN_KEY] = key
    if pipeline:
        out[envvars.MLFLOW_EXPERIMENT_NAME] = pipeline
    return out


def with_replica_env(exec_properties: Dict[str, Any], env: Dict[str, str]) -> Dict[str, Any]:
    """A copy of ``exec_properties`` whose CustomJob gives ``env`` to every worker pool's container.

    Raises:
        ConfigError: the job is not a Vertex one, or a worker pool names no image (TFX would run
            its stock image there, which has no trainer_runtime to run ``TrackedExecutor``).
    """
    custom_config = json_utils.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY, "null")) or {}
    if not isinstance(custom_config, dict) or not isinstance(custom_config.get(launcher.TRAINING_ARGS_KEY), dict):
        raise ConfigError(f"custom_config has no {launcher.TRAINING_ARGS_KEY!r} for the Vertex AI Training job",
                          hint=EXAMPLE)
    if not custom_config.get(ENABLE_VERTEX_KEY, custom_config.get(launcher.ENABLE_UCAIP_KEY)):
        raise ConfigError(f"the tracked launcher runs Vertex AI Training jobs only; {ENABLE_VERTEX_KEY!r} is not set",
                          hint=f"set custom_config[{ENABLE_VERTEX_KEY!r}] = True and "
                               f"custom_config[{VERTEX_REGION_KEY!r}] to the job's region")
    custom_config = copy.deepcopy(custom_config)
    job_args = custom_config[launcher.TRAINING_ARGS_KEY]
    job_spec = job_args.get("job_spec") if isinstance(job_args.get("job_spec"), dict) else job_args
    pools = job_spec.get("worker_pool_specs") or []
    if not pools:
        raise ConfigError("the Vertex AI Training job has no worker_pool_specs", hint=EXAMPLE)
    for index, pool in enumerate(pools):
        if not pool:
            continue  # an empty pool keeps its place in the list (e.g. no parameter servers)
        container = pool.get("container_spec") or {}
        if not container.get("image_uri"):
            raise ConfigError(f"worker_pool_specs[{index}] names no container_spec.image_uri: TFX would run its "
                              "stock image there, which has no trainer_runtime",
                              hint="set image_uri to the trainer-runtime image in every worker pool")
        given = {item.get("name") for item in container.get("env") or []}
        container["env"] = list(container.get("env") or []) + [
            {"name": name, "value": value} for name, value in env.items() if name not in given]
        pool["container_spec"] = container
    log.info("Vertex AI Training job: %d worker pool(s), TrackedExecutor on every replica; replica env %s",
             len([p for p in pools if p]), env)
    return {**exec_properties, standard_component_specs.CUSTOM_CONFIG_KEY: json_utils.dumps(custom_config)}
