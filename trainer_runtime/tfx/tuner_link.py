"""The link from a Trainer's run to the Tuner run whose best hyperparameters it trains with.

``TrackedTunerExecutor`` puts its run's id on the ``best_hyperparameters`` artifact
as a custom property (MLMD on LocalDagRunner, the artifact's metadata on Vertex).
Not as a file beside ``best_hyperparameters.txt``: TFX's Trainer reads that
directory with ``io_utils.get_only_uri_in_dir`` and fails on a second file.

Light to import: no tfx, no tensorflow.
"""
from __future__ import annotations

from typing import Any, Mapping

RUN_ID_PROPERTY = "mlflow_run_id"
RUN_URL_PROPERTY = "mlflow_run_url"
TUNER_RUN_TAG = "trainer_runtime.tuner_run_id"
TUNER_RUN_URL_TAG = "trainer_runtime.tuner_run_url"
HYPERPARAMETERS_KEY = "hyperparameters"


def tags_from_inputs(input_dict: Mapping[str, Any] | None) -> dict[str, str]:
    """``trainer_runtime.tuner_run_id`` (and its URL) when the Trainer's ``hyperparameters`` input
    came from a tracked Tuner; else nothing."""
    artifacts = (input_dict or {}).get(HYPERPARAMETERS_KEY) or []
    if len(artifacts) != 1:
        return {}
    artifact = artifacts[0]
    tags = {}
    for prop, tag in ((RUN_ID_PROPERTY, TUNER_RUN_TAG), (RUN_URL_PROPERTY, TUNER_RUN_URL_TAG)):
        try:
            value = artifact.get_string_custom_property(prop) if artifact.has_custom_property(prop) else ""
        except (AttributeError, TypeError, ValueError):
            value = ""
        if value:
            tags[tag] = value
    return tags
