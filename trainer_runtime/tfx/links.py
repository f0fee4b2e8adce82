"""Tags that link a run back to where it ran: the Vertex pipeline run, TensorBoard logs, the image.

- ``trainer_runtime.vertex_pipeline_url``: the Vertex AI console page of the
  pipeline run, from its job id (the executor output path Vertex passes, see
  ``tfx.context``), the project (``CLOUD_ML_PROJECT_ID``, else ``GOOGLE_CLOUD_PROJECT``)
  and the region
  (``CLOUD_ML_REGION``, ``GOOGLE_CLOUD_REGION``, else the
  ``VERTEX_AI_PIPELINES_RUN_LABELS`` Vertex sets, when they carry one).
  Without a region there is no URL; the ids are tagged anyway.
- ``trainer_runtime.tensorboard_log_dir``: TFX's conventional log dir,
  ``<model_run>/logs`` (``fn_args.model_run_dir`` is where TFX's templates put
  TensorBoard's logs), when the run_fn wrote there.
- ``trainer_runtime.image_digest``: the image's digest, when the environment
  carries one (``image_digest``: whoever pinned the image by digest knows it;
  a container cannot learn its own digest).
"""
from __future__ import annotations

import json
import logging
from typing import Any, Mapping

from trainer_runtime.core import envvars

log = logging.getLogger(__name__)

VERTEX_URL_TAG = "trainer_runtime.vertex_pipeline_url"
TENSORBOARD_TAG = "trainer_runtime.tensorboard_log_dir"
IMAGE_DIGEST_TAG = "trainer_runtime.image_digest"
CONSOLE = "https://console.cloud.google.com/vertex-ai/locations/{region}/pipelines/runs/{job}?project={project}"


def vertex_pipeline_url(tags: Mapping[str, str], env: Mapping[str, str]) -> str | None:
    """The console URL of the Vertex pipeline run this task belongs to, or None."""
    job = tags.get("vertex.pipeline_job_id")
    if not job:
        return None
    project = env.get(envvars.CLOUD_ML_PROJECT_ID) or env.get(envvars.GOOGLE_CLOUD_PROJECT)
    region = env.get(envvars.CLOUD_ML_REGION) or env.get(envvars.GOOGLE_CLOUD_REGION) or _label(env, "region")
    if not (project and region):
        return None
    return CONSOLE.format(region=region, job=job, project=project)


def _label(env: Mapping[str, str], key: str) -> str | None:
    try:
        labels = json.loads(env.get(envvars.VERTEX_AI_PIPELINES_RUN_LABELS) or "{}")
    except ValueError:
        return None
    value = labels.get(key) if isinstance(labels, dict) else None
    return str(value) if value else None


def start_tags(config: Any, tags: Mapping[str, str], env: Mapping[str, str]) -> dict[str, str]:
    """The link tags known when the run starts."""
    if not config.link_tags:
        return {}
    links: dict[str, str] = {}
    url = vertex_pipeline_url(tags, env)
    if url:
        links[VERTEX_URL_TAG] = url
    if config.image_digest:
        links[IMAGE_DIGEST_TAG] = config.image_digest
    return links


def tensorboard_tags(config: Any, model_run_dir: str | None) -> dict[str, str]:
    """``<model_run>/logs`` when the run_fn wrote TensorBoard logs there (TFX's convention)."""
    if not config.link_tags or not model_run_dir:
        return {}
    try:
        from tfx.dsl.io import fileio

        for candidate in (model_run_dir.rstrip("/") + "/logs", model_run_dir.rstrip("/")):
            if fileio.exists(candidate) and any("tfevents" in name for _, _, names in fileio.walk(candidate)
                                                for name in names):
                return {TENSORBOARD_TAG: candidate}
    except Exception as exc:  # noqa: BLE001 - a link is a bonus
        log.debug("no TensorBoard link: %s", exc)
    return {}
