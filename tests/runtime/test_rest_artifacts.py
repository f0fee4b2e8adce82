"""``MlflowRest.put_artifact`` to a ``gs://`` artifact root: MLflow's own GCS client does the upload
(its retries and timeouts, not ours), so the runtime's timeout must bound the wait.

Real parts: the storage emulator, and the GCS fault proxy in front of it hanging every request.
"""
from __future__ import annotations

import uuid

from tests.runtime.helpers import timed
from trainer_runtime.tracking.rest import MlflowRest, RestError
from trainer_runtime.status.storage import GcsDir


def test_an_artifact_reaches_a_gs_root(gcs, mlflow_server):
    root = f"gs://{gcs}/artifacts/{uuid.uuid4().hex[:8]}"
    uri = MlflowRest(mlflow_server.url, 10).put_artifact(root, "model/signature.json", b'{"a": 1}',
                                                         "application/json")
    assert uri == f"{root}/model/signature.json"
    assert GcsDir(f"{root}/model").read_text("signature.json") == '{"a": 1}'


def test_a_hanging_gs_root_cannot_outlive_the_timeout(gcs, gcs_faults, mlflow_server):
    gcs_faults.control.set(fail_always=True, hang_seconds=20)
    root = f"gs://{gcs}/artifacts/{uuid.uuid4().hex[:8]}"
    _, exc, seconds = timed(MlflowRest(mlflow_server.url, 10).put_artifact, root, "best.json", b"{}",
                            "application/json", timeout=2.0)
    assert isinstance(exc, RestError) and "still uploading after 2s" in str(exc), exc
    assert seconds < 2.0 + 1.0
