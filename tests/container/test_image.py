"""The image, really built here on each supported base's stand-in, with a real engine: lint, schema,
structure tests, and inside the container against the live MLflow server on the host: a short
standalone training, both Vertex executor wirings, a SIGTERM during an outage, and TFX's own Trainer
executor tests with TrackedExecutor. Each test taking ``product_image`` runs once per base."""
from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import MEASUREMENTS
from tests.container.conftest import DEFAULT_BASE, REPO
from tests.harness.vertex_local import LocalVertex
from tests.tfx.conftest import history_steps, mlflow_run

#: the first test to take a product image (test_cloudbuild's tag-build test takes the stand-ins before these,
#: with a limit of its own) may build every base's stand-in and product image, and pytest-timeout counts the
#: fixtures' setup: from nothing, 14 min at full priority, ~31 min niced beside make test's other two suites;
#: each build has its own 3000 s limit (conftest). Cached by recipe hash afterwards: seconds.
IMAGE_TESTS_TIMEOUT = 4800

TOOLS = Path(os.environ.get("TR_TOOLS_VENV", "/nonexistent")) / "bin"


def test_concurrent_builds_report_their_own_seconds():
    """The stand-in and product builds run all at once; each base's seconds are its own, not those of the
    slowest base waited for before it."""
    from tests.container.conftest import _all_at_once

    results = _all_at_once({"slow": (["sleep", "2"], {}), "quick": (["sh", "-c", "echo built"], {}),
                            "failed": (["sh", "-c", "exit 3"], {})}, timeout=30)
    assert results["slow"][0] == 0 and results["slow"][2] >= 2.0
    assert results["quick"][:2] == (0, "built\n") and results["quick"][2] < 1.5
    assert results["failed"][0] == 3


def test_hadolint_is_clean():
    out = subprocess.run([str(TOOLS / "hadolint"), "Dockerfile"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_cloudbuild_validates_offline():
    out = subprocess.run([str(TOOLS / "check-jsonschema"), "--builtin-schema", "vendor.cloudbuild",
                          "cloudbuild.yaml"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    text = (REPO / "cloudbuild.yaml").read_text()
    # What each kind of build renders to is tested in test_cloudbuild.py.
    for needle in ("--build-arg=TFX_VERSION=1.21.0", "DEFAULT_TFX=${_TFX_VERSION}", "${TAG_NAME:-", "${COMMIT_SHA:-",
                   "container-structure-test", "images:", "logging: CLOUD_LOGGING_ONLY"):
        assert needle in text


def test_dockerfile_has_no_buildkit_only_syntax():
    text = (REPO / "Dockerfile").read_text()
    assert "--mount" not in text and "# syntax=" not in text and "<<" not in text
    assert "tests/" not in text and "ca-certificates" not in text


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.timeout(IMAGE_TESTS_TIMEOUT)
def test_structure_tests_pass(product_image):
    """The shared structure tests, and this base's own (its TFX, its lock), as cloudbuild.yaml runs them."""
    out = subprocess.run([str(TOOLS / "container-structure-test"), "test", "--driver", "docker",
                          "--image", product_image.tag, "--config", "tests/container/structure.yaml",
                          "--config", f"tests/container/structure-tfx-{product_image.tfx}.yaml",
                          # the license check trips on the Debian 13 stand-ins' base-files (see that file)
                          *(["--config", "tests/container/structure-licenses.yaml"]
                            if product_image.tfx == DEFAULT_BASE else [])],
                         cwd=REPO, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert "FAIL" not in out.stdout.split("RESULTS")[-1].replace("Failures: 0", "")


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.timeout(IMAGE_TESTS_TIMEOUT)
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
@pytest.mark.timeout(IMAGE_TESTS_TIMEOUT)
def test_standalone_training_inside_the_container(product_image, mlflow_server, tmp_path):
    experiment = f"img-{uuid.uuid4().hex[:8]}"
    out = _docker_run("-v", f"{REPO / 'examples'}:/work/examples:ro", "-v", f"{tmp_path}:/out",
                      "-e", "PYTHONPATH=/work", "-e", f"MLFLOW_TRACKING_URI={mlflow_server.url}",
                      "-e", f"MLFLOW_EXPERIMENT_NAME={experiment}", "-e", "TRAINER_RUNTIME_STATUS_DIR=/out",
                      "-e", "TRAINER_RUNTIME_LOG_EVERY_N_STEPS=10",
                      product_image.tag, "run", "examples.retrieval.standalone:main", "--", "--epochs", "2")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    client, run = mlflow_run(mlflow_server.url, experiment)
    assert run.info.status == "FINISHED"
    assert history_steps(client, run.info.run_id, "val_loss") == [0, 1]
    assert history_steps(client, run.info.run_id, "step/loss") == [10, 20, 30]  # 15 batches an epoch
    assert run.data.tags["trainer_runtime.image_version"] == "0.1.0-test"
    status = json.loads((tmp_path / "mlflow_status.json").read_text())
    info = json.loads((tmp_path / "mlflow_info.json").read_text())
    assert status["stage"] == "completed" and info["run_id"] == run.info.run_id


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.timeout(IMAGE_TESTS_TIMEOUT)
def test_keras_3_as_the_default_keras_inside_the_container(product_image, mlflow_server, tmp_path):
    """With TF_USE_LEGACY_KERAS=0 (Keras 3 for tf.keras too, as for users who leave tf-keras), a Keras 3 fit
    in the image is tracked: the runtime's epochs and steps, and the user's own fluent metric, on every base."""
    experiment = f"img-keras3-{uuid.uuid4().hex[:8]}"
    out = _docker_run("-v", f"{REPO / 'tests'}:/work/tests:ro", "-v", f"{tmp_path}:/out", "-e", "PYTHONPATH=/work",
                      "-e", "TF_USE_LEGACY_KERAS=0", "-e", f"MLFLOW_TRACKING_URI={mlflow_server.url}",
                      "-e", f"MLFLOW_EXPERIMENT_NAME={experiment}", "-e", "TRAINER_RUNTIME_STATUS_DIR=/out",
                      "-e", "TRAINER_RUNTIME_LOG_EVERY_N_STEPS=2",
                      product_image.tag, "run", "tests.user_code.keras_pkg.fit:keras3")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    client, run = mlflow_run(mlflow_server.url, experiment)
    assert run.info.status == "FINISHED"
    assert history_steps(client, run.info.run_id, "loss") == [0, 1]
    assert history_steps(client, run.info.run_id, "val_loss") == [0, 1]
    assert history_steps(client, run.info.run_id, "step/loss") == [2, 4, 6]  # 3 batches an epoch
    assert run.data.metrics["user_keras_major"] == 3.0
    assert json.loads((tmp_path / "mlflow_status.json").read_text())["stage"] == "completed"


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.timeout(IMAGE_TESTS_TIMEOUT)
@pytest.mark.parametrize("wiring", ["custom_executor_spec", "default_commands"])
def test_vertex_executor_path_inside_the_container(product_image, wiring, mlflow_server, interactions, tmp_path,
                                                    monkeypatch):
    """The user guide's single-machine pipeline in each wiring (TrackedExecutor as the Trainer's executor,
    or the image's entrypoint as default_commands), compiled here and each task run in the image as Vertex
    would."""
    from tests.tfx.test_user_guide import EXECUTOR, FORWARDER, ONE_MACHINE, compile_snippet

    assert wiring in (EXECUTOR, FORWARDER)
    spec, experiment = compile_snippet((wiring, ONE_MACHINE), tmp_path, interactions, mlflow_server.url, monkeypatch)
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


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


GRACE = 10  # Vertex's is 30 s; the runtime's default sigterm_grace 25 s. Shorter here: the close waits on the outage.


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.timeout(IMAGE_TESTS_TIMEOUT)
def test_sigterm_during_an_outage_inside_the_container(product_image, fault_proxy, tmp_path):
    """Vertex's preemption inside the image: the server goes down mid-training, then SIGTERM. The runtime
    closes inside the grace and exits 143; the status says killed, tracking degraded, and the points the
    server lacks are in the spool beside it."""
    name = f"tr-sigterm-{uuid.uuid4().hex[:8]}"
    experiment = f"img-term-{uuid.uuid4().hex[:8]}"
    started = subprocess.run(
        ["docker", "run", "-d", "--name", name, "--network", "host", "-v", f"{REPO / 'examples'}:/work/examples:ro",
         "-v", f"{tmp_path}:/out", "-e", "PYTHONPATH=/work", "-e", f"MLFLOW_TRACKING_URI={fault_proxy.url}",
         "-e", f"MLFLOW_EXPERIMENT_NAME={experiment}", "-e", "TRAINER_RUNTIME_STATUS_DIR=/out",
         "-e", f"TRAINER_RUNTIME_SIGTERM_GRACE={GRACE}", product_image.tag,
         "run", "examples.retrieval.standalone:main", "--", "--epochs", "400"],
        capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    try:
        def batches() -> int:
            return fault_proxy.control.stats()["requests"].get("/api/2.0/mlflow/runs/log-batch", 0)
        _wait_for(lambda: (tmp_path / "mlflow_info.json").exists() and batches() >= 2, 600,
                  "the run to start and log two batches")
        fault_proxy.control.set(drop=True)
        time.sleep(3)  # into the outage; under make test's load the niced container may end no epoch in it
        signalled = time.monotonic()
        subprocess.run(["docker", "kill", "--signal", "TERM", name], check=True, capture_output=True, timeout=60)
        waited = subprocess.run(["docker", "wait", name], capture_output=True, text=True, timeout=120)
        exited_after = time.monotonic() - signalled
    finally:
        logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True, timeout=60)
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)
    assert waited.stdout.strip() == "143", (waited.stdout, logs.stderr[-3000:])
    assert exited_after <= GRACE + 5, exited_after
    status = json.loads((tmp_path / "mlflow_status.json").read_text())
    tracking = status["tracking"]
    assert status["stage"] == "killed" and status["exit_code"] == 143, status
    # degraded: the run's end is in the spool, with whatever points the outage held (none if no epoch ended in
    # it, seen once under make test's load)
    assert tracking["state"] == "degraded" and tracking["run_closed"] is False, status
    assert tracking["close_seconds"] <= GRACE, status
    spool = Path(tracking["spool_uri"].replace("/out", str(tmp_path), 1))
    assert spool.is_file() and spool.stat().st_size > 0, (tracking, sorted(str(p) for p in tmp_path.rglob("*")))
    MEASUREMENTS.append(f"SIGTERM in an outage inside the TFX {product_image.tfx} image: exit 143 "
                        f"{exited_after:.1f}s after the signal, close {tracking['close_seconds']}s, "
                        f"{tracking['pending']} pending in the spool")


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.timeout(IMAGE_TESTS_TIMEOUT)
def test_tfx_trainer_executor_tests_pass_with_tracked_executor(product_image, mlflow_server, tmp_path):
    """TFX's own Trainer executor tests (from the tfx wheel the base carries, with its testdata) run with
    TrackedExecutor in place of GenericExecutor: each test's Do trains, exports, and is one FINISHED run."""
    from mlflow import MlflowClient

    experiment = f"conformance-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    out = _docker_run("-v", f"{REPO / 'tests'}:/work/tests:ro", "-e", "PYTHONPATH=/work", "-e", "HOME=/tmp",
                      "-e", f"MLFLOW_TRACKING_URI={mlflow_server.url}", "-e", f"MLFLOW_EXPERIMENT_NAME={experiment}",
                      "-e", "TEST_TMPDIR=/tmp", "--entrypoint", "python", product_image.tag,
                      "-m", "tests.tfx.tfx_conformance", timeout=1800)
    seconds = time.monotonic() - started
    lines = [line for line in out.stdout.splitlines() if line.startswith("CONFORMANCE ")]
    assert lines, out.stdout[-2000:] + out.stderr[-4000:]
    result = json.loads(lines[-1][len("CONFORMANCE "):])
    assert out.returncode == 0 and result["problems"] == [], (result, out.stderr[-4000:])
    assert result["tfx"] == product_image.tfx and result["executors"] == ["trainer_runtime.tfx.executor.TrackedExecutor"]
    assert result["ran"] - result["skipped"] == result["constructed"] >= 3, result
    client = MlflowClient(mlflow_server.url)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * result["constructed"], [r.info for r in runs]
    MEASUREMENTS.append(f"TFX {product_image.tfx}'s Trainer executor tests with TrackedExecutor in its image: "
                        f"{result['ran']} ran ({result['skipped']} skipped by TFX), {len(runs)} runs FINISHED, "
                        f"{seconds:.0f}s")
