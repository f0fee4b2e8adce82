"""Session-wide live servers. Documented in tests/README.md.

A fixture that cannot start fails the tests that use it (FixtureStartError with
the server's log tail); nothing is skipped silently.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import status_files
from tests.harness.control import Control
from tests.harness.procs import ManagedProcess, free_port
from tests.harness import servers

#: one-line measurements (start-up and build times, sizes) printed at the end of the run
MEASUREMENTS: list[str] = []
#: the status files the tests left in their tmp_path, validated, by stage (``status_files.labels``)
STATUS_FILES_CHECKED: Counter = Counter()
#: tests marked ``status_files_unchecked``: their files were not validated, and why
STATUS_FILES_UNCHECKED: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter):
    lines = list(MEASUREMENTS)
    if STATUS_FILES_CHECKED:
        lines.append(status_files.summary(STATUS_FILES_CHECKED))
    if STATUS_FILES_UNCHECKED:
        lines.append(f"status files not validated, as marked (status_files_unchecked): "
                     f"{len(STATUS_FILES_UNCHECKED)} test(s)")
    if lines:
        terminalreporter.section("trainer-runtime measurements")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def _status_files_are_valid(request):
    """After each test that used ``tmp_path``: every status and info file under it is strict JSON
    and valid against the contract's strict schema (replica files by their name), or the test
    fails at teardown naming the file and the error. A test that writes such files by hand or
    broken on purpose says so: ``@pytest.mark.status_files_unchecked("why")``."""
    yield
    if "tmp_path" not in request.fixturenames or "tmp_path" not in request.node.funcargs:
        return
    marker = request.node.get_closest_marker("status_files_unchecked")
    if marker is not None:
        assert marker.args and str(marker.args[0]).strip(), \
            f"{request.node.nodeid}: status_files_unchecked needs a reason"
        STATUS_FILES_UNCHECKED[request.node.nodeid] = marker.args[0]
        return
    for path in status_files.status_files(request.node.funcargs["tmp_path"]):
        STATUS_FILES_CHECKED.update(status_files.labels(path.name, status_files.check(path)))


SA_EMAIL = "trainer@test-project.iam.gserviceaccount.com"
BUCKET = "status-bucket"
REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config):
    # google-auth reads GCE_METADATA_HOST/IP once, when its _metadata module is
    # first imported, so they are set here, before any test imports google.auth.
    # They also keep every test away from the real 169.254.169.254.
    port = free_port()
    os.environ["TR_TEST_METADATA_PORT"] = str(port)
    os.environ["GCE_METADATA_HOST"] = f"127.0.0.1:{port}"
    os.environ["GCE_METADATA_IP"] = f"127.0.0.1:{port}"
    os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    os.environ.setdefault("GOOGLE_CLOUD_PROJECT", "test-project")


@dataclass
class Server:
    proc: ManagedProcess
    url: str
    control: Control | None = None


@pytest.fixture(scope="session")
def test_keys(tmp_path_factory) -> dict:
    """An RSA key pair: the metadata server signs with it, the proxy verifies."""
    import rsa

    public, private = rsa.newkeys(2048)
    folder = tmp_path_factory.mktemp("keys")
    paths = {"private": folder / "key.pem", "public": folder / "pub.pem"}
    paths["private"].write_bytes(private.save_pkcs1())
    paths["public"].write_bytes(public.save_pkcs1())
    return paths


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    proc, url = servers.start_mlflow(tmp_path_factory.mktemp("mlflow"))
    MEASUREMENTS.append(f"mlflow server healthy in {proc.started_in:.1f}s")
    yield Server(proc, url)
    proc.stop()


@pytest.fixture(scope="session")
def metadata_server(tmp_path_factory, test_keys):
    port = int(os.environ["TR_TEST_METADATA_PORT"])
    proc = servers.start_metadata_server(tmp_path_factory.mktemp("metadata"), port,
                                         test_keys["private"], SA_EMAIL)
    url = f"http://127.0.0.1:{port}"
    yield Server(proc, url, Control(f"{url}/__control__"))
    proc.stop()


@pytest.fixture
def metadata(metadata_server):
    """The metadata server, reset to a one-hour token lifetime and zero counts."""
    metadata_server.control.set(lifetime=3600, fail_status=None, email=SA_EMAIL, reset_stats=True)
    yield metadata_server


def _proxy(tmp_path_factory, mlflow_server, test_keys, require_auth):
    proc, url = servers.start_fault_proxy(tmp_path_factory.mktemp("proxy"), mlflow_server.url,
                                          test_keys["public"], require_auth)
    return Server(proc, url, Control(f"{url}/__proxy__"))


@pytest.fixture(scope="session")
def auth_proxy_server(tmp_path_factory, mlflow_server, test_keys):
    server = _proxy(tmp_path_factory, mlflow_server, test_keys, require_auth=True)
    yield server
    server.proc.stop()


@pytest.fixture(scope="session")
def open_proxy_server(tmp_path_factory, mlflow_server, test_keys):
    server = _proxy(tmp_path_factory, mlflow_server, test_keys, require_auth=False)
    yield server
    server.proc.stop()


@pytest.fixture
def auth_proxy(auth_proxy_server):
    """Cloud Run stand-in: needs a valid ID token for its own URL. Faults cleared per test."""
    auth_proxy_server.control.set(reset=True)
    yield auth_proxy_server
    auth_proxy_server.control.set(reset=True)


@pytest.fixture
def fault_proxy(open_proxy_server):
    """Fault-injecting proxy with no auth in front of MLflow. Faults cleared per test."""
    open_proxy_server.control.set(reset=True)
    yield open_proxy_server
    open_proxy_server.control.set(reset=True)


@pytest.fixture(scope="session")
def gcs_emulator_server(tmp_path_factory):
    proc, host = servers.start_storage_emulator(tmp_path_factory.mktemp("gcs"), BUCKET)
    MEASUREMENTS.append(f"storage emulator ready in {proc.started_in:.1f}s")
    yield Server(proc, host)
    proc.stop()


@pytest.fixture
def gcs(gcs_emulator_server, monkeypatch):
    """STORAGE_EMULATOR_HOST pointed at the emulator; yields the bucket name."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator_server.url)
    yield BUCKET


@pytest.fixture(scope="session")
def gcs_fault_proxy_server(tmp_path_factory, gcs_emulator_server):
    proc, url = servers.start_gcs_fault_proxy(tmp_path_factory.mktemp("gcs-proxy"), gcs_emulator_server.url)
    yield Server(proc, url, Control(f"{url}/__proxy__"))
    proc.stop()


@pytest.fixture
def gcs_faults(gcs_fault_proxy_server, monkeypatch):
    """STORAGE_EMULATOR_HOST pointed at the GCS fault proxy (faults cleared); yields the proxy."""
    gcs_fault_proxy_server.control.set(reset=True)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_fault_proxy_server.url)
    yield gcs_fault_proxy_server
    gcs_fault_proxy_server.control.set(reset=True)


@pytest.fixture(scope="session")
def interactions(tmp_path_factory) -> Path:
    """The example pipeline's interactions CSV folder (deterministic)."""
    from examples.retrieval.data import write_interactions

    folder = tmp_path_factory.mktemp("interactions")
    write_interactions(folder)
    return folder


@pytest.fixture
def clean_env(monkeypatch):
    """No MLflow or runtime settings leak in from the caller's environment."""
    for key in list(os.environ):
        if key.startswith(("MLFLOW_", "TRAINER_RUNTIME_", "AIP_", "CLOUD_ML_")):
            monkeypatch.delenv(key)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    return monkeypatch
