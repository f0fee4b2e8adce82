"""One MLflow run per training, across retries: the run key, the attempt count, where steps resume.

When Vertex retries a preempted or failed task, the new attempt must log into
the run the first one opened, not beside it. The run key names the task from
where it runs, the same on every attempt:

1. the configured ``run_key`` (``TRAINER_RUNTIME_RUN_KEY``; the tracked Vertex
   Training launcher passes its own task's key to the replicas this way);
2. on Vertex Pipelines: the pipeline job id and the task name;
3. in a Vertex CustomJob: its id (``CLOUD_ML_JOB_ID``);
4. on other TFX runners: the pipeline, its run id and the component.

Elsewhere there is no key, and every start creates a run. The key is stored on
the run as a tag; ``tracking.open_run`` finds it there. An explicit
``MLFLOW_RUN_ID`` still wins over the key.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from trainer_runtime.core import envvars

RUN_KEY_TAG = "trainer_runtime.run_key"
ATTEMPTS_TAG = "trainer_runtime.tracking.attempts"
#: the per-step metrics of ``log_every_n_steps`` (``keras_callback``), counted on the global step
STEP_PREFIX = "step/"
#: the system metrics (``system_metrics``), counted in samples
SYSTEM_PREFIX = "system/"

_UNSAFE = re.compile(r"[^A-Za-z0-9._:/@=+-]")


def run_key(configured: str | None, tags: Mapping[str, str], env: Mapping[str, str]) -> str | None:
    """The key of the run this training logs to, the same on every attempt; None: no key here."""
    if configured:
        key = configured
    elif tags.get("vertex.pipeline_job_id") and tags.get("vertex.task_name"):
        key = f"vertex-pipeline/{tags['vertex.pipeline_job_id']}/{tags['vertex.task_name']}"
    elif env.get(envvars.CLOUD_ML_JOB_ID):
        key = f"vertex-custom-job/{env[envvars.CLOUD_ML_JOB_ID]}"
    elif tags.get("tfx.pipeline_run_id") and tags.get("tfx.component"):
        key = f"tfx/{tags.get('tfx.pipeline', '')}/{tags['tfx.pipeline_run_id']}/{tags['tfx.component']}"
    else:
        return None
    # Quotes would end the value in MLflow's search filter; nothing else needs escaping there.
    return _UNSAFE.sub("_", key)


def search_filter(key: str) -> str:
    return f"tags.`{RUN_KEY_TAG}` = '{key}'"


def attempts_of(run: Any) -> int:
    """How many attempts the runtime has made at ``run`` (0: none yet, a run someone else created)."""
    try:
        return max(0, int(run.data.tags.get(ATTEMPTS_TAG, "0")))
    except ValueError:
        return 0


def resume_point(run: Any) -> tuple[int, int]:
    """``(first epoch step, global step)`` for an attempt that continues ``run``.

    The first epoch step comes right after the highest step of the run's epoch
    metrics; the global step is the highest step of its ``step/`` metrics. Both
    from the run's latest metric values, which MLflow keeps per key at its highest
    step: one request, however many metrics the run has.
    """
    epoch_step, global_step = -1, 0
    for metric in run.data.to_proto().metrics:
        if metric.key.startswith(SYSTEM_PREFIX):  # sample counts, not training steps
            continue
        if metric.key.startswith(STEP_PREFIX):
            global_step = max(global_step, metric.step)
        else:
            epoch_step = max(epoch_step, metric.step)
    return epoch_step + 1, global_step
