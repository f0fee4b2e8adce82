"""The image, really built here on the stand-in base, with a real engine: lint, schema, structure
tests, and a short training inside the container against the live MLflow server on the host."""
from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.container.conftest import REPO
from tests.harness.vertex_local import LocalVertex
from tests.tfx.conftest import history_steps, mlflow_run

TOOLS = Path(os.environ.get("TR_TOOLS_VENV", "/nonexistent")) / "bin"


def test_hadolint_is_clean():
    out = subprocess.run([str(TOOLS / "hadolint"), "Dockerfile"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_cloudbuild_validates_offline():
    out = subprocess.run([str(TOOLS / "check-jsonschema"), "--builtin-schema", "vendor.cloudbuild",
                          "cloudbuild.yaml"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    text = (REPO / "cloudbuild.yaml").read_text()
    # What each kind of build renders to is tested in test_cloudbuild.py.
    for needle in ("--build-arg=TFX_VERSION=${_TFX_VERSION}", "${TAG_NAME:-", "${COMMIT_SHA:-",
                   "container-structure-test", "images:", "logging: CLOUD_LOGGING_ONLY"):
        assert needle in text


def test_dockerfile_has_no_buildkit_only_syntax():
    text = (REPO / "Dockerfile").read_text()
    assert "--mount" not in text and "# syntax=" not in text and "<<" not in text
    assert "tests/" not in text and "ca-certificates" not in text


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.timeout(2700)  # the first of these builds the stand-in base (~4 min here, cold)
def test_structure_tests_pass(product_image):
    out = subprocess.run([str(TOOLS / "container-structure-test"), "test", "--driver", "docker",
                          "--image", product_image.tag, "--config", "tests/container/structure.yaml"],
                         cwd=REPO, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert "FAIL" not in out.stdout.split("RESULTS")[-1].replace("Failures: 0", "")


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.timeout(2700)
def test_a_tfx_version_without_a_lock_is_refused_at_build_time(standin_base):
    """`--build-arg TFX_VERSION` picks the base's lock; a version no lock is made for fails the build with
    the locks there are, not with an image that reinstalls another TFX's pins over the base. (A base of that
    version is the stand-in under another tag: the refusal comes before anything is installed.)"""
    unsupported = "gcr.io/tfx-oss-public/tfx:1.15.0"
    subprocess.run(["docker", "tag", standin_base, unsupported], check=True, capture_output=True)
    try:
        out = subprocess.run(["docker", "build", "--network", "host", "--build-arg", "TFX_VERSION=1.15.0",
                              "-t", "trainer-runtime:refused", "."], cwd=REPO, capture_output=True, text=True,
                             env=dict(os.environ, DOCKER_BUILDKIT="0"), timeout=900)
    finally:
        subprocess.run(["docker", "rmi", unsupported], capture_output=True)
    assert out.returncode != 0
    said = out.stdout + out.stderr
    assert "no lock for TFX 1.15.0; the locks made (bases/README.md): /opt/trainer-runtime/locks/tfx-1.16.0.lock " \
           "/opt/trainer-runtime/locks/tfx-1.17.3.lock /opt/trainer-runtime/locks/tfx-1.21.0.lock" in said, said[-3000:]


def _docker_run(*args, timeout=900):
    return subprocess.run(["docker", "run", "--rm", "--network", "host", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.timeout(2700)  # the first of these builds the stand-in base (~4 min here, cold)
def test_standalone_training_inside_the_container(product_image, mlflow_server, tmp_path):
    experiment = f"img-{uuid.uuid4().hex[:8]}"
    out = _docker_run("-v", f"{REPO / 'examples'}:/work/examples:ro", "-v", f"{tmp_path}:/out",
                      "-e", "PYTHONPATH=/work", "-e", f"MLFLOW_TRACKING_URI={mlflow_server.url}",
                      "-e", f"MLFLOW_EXPERIMENT_NAME={experiment}", "-e", "TRAINER_RUNTIME_STATUS_DIR=/out",
                      product_image.tag, "run", "examples.retrieval.standalone:main", "--", "--epochs", "2")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    client, run = mlflow_run(mlflow_server.url, experiment)
    assert run.info.status == "FINISHED"
    assert history_steps(client, run.info.run_id, "val_loss") == [0, 1]
    assert run.data.tags["trainer_runtime.image_version"] == "0.1.0-test"
    status = json.loads((tmp_path / "mlflow_status.json").read_text())
    info = json.loads((tmp_path / "mlflow_info.json").read_text())
    assert status["stage"] == "completed" and info["run_id"] == run.info.run_id


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.timeout(2700)  # the first of these builds the stand-in base (~4 min here, cold)
def test_vertex_executor_path_inside_the_container(product_image, mlflow_server, interactions, tmp_path,
                                                    monkeypatch):
    """The user guide's default_commands pipeline, each task run in the image as Vertex would."""
    from tests.tfx.test_user_guide import FORWARDER, ONE_MACHINE, compile_snippet

    spec, experiment = compile_snippet((FORWARDER, ONE_MACHINE), tmp_path, interactions, mlflow_server.url,
                                       monkeypatch)
    mounts = ["-v", f"{tmp_path}:{tmp_path}", "-v", f"{interactions}:{interactions}:ro"]

    class InContainer(LocalVertex):
        def command_for(self, argv):
            return ["docker", "run", "--rm", "--network", "host", *mounts, "--entrypoint", argv[0],
                    product_image.tag, *argv[1:]]

    vertex = InContainer(spec, tmp_path / "vertex-root")
    gen = vertex.run("CsvExampleGen", dict(os.environ))
    assert gen.returncode == 0, gen.stderr[-4000:]
    assert "Executor tfx.components.example_gen.csv_example_gen.executor.Executor do:" in gen.stderr
    trainer = vertex.run("Trainer", dict(os.environ))
    assert trainer.returncode == 0, trainer.stderr[-4000:]
    assert "Executor trainer_runtime.tfx.executor.TrackedExecutor do:" in trainer.stderr
    client, run = mlflow_run(mlflow_server.url, experiment)
    assert run.info.status == "FINISHED"
    assert history_steps(client, run.info.run_id, "val_loss") == [0, 1, 2]
    assert run.data.tags["vertex.task_name"] == "Trainer"
    model_run = trainer.executor_input["outputs"]["artifacts"]["model_run"]["artifacts"][0]["uri"]
    assert json.loads(Path(model_run + "-mlflow", "mlflow_status.json").read_text())["stage"] == "completed"
