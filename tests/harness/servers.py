"""Factories for the live servers the tests use. Each returns a started ManagedProcess.

The pytest fixtures in tests/conftest.py call these with session-scoped temp
dirs; bench/ and the demo can call them too.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .procs import ManagedProcess, free_port

HERE = Path(__file__).resolve().parent


def tools_venv() -> Path:
    """The venv with full mlflow, the storage emulator and the linters (made by `make`)."""
    value = os.environ.get("TR_TOOLS_VENV")
    if not value or not Path(value, "bin", "python").exists():
        raise RuntimeError("TR_TOOLS_VENV is not set to a built tools venv; run the tests with "
                           "`make test`, which builds it (requirements-tools.lock).")
    return Path(value)


def start_mlflow(workdir: Path, port: int | None = None, timeout: float = 120.0) -> tuple[ManagedProcess, str]:
    """Full MLflow server: SQLite backend, proxied artifacts, 1 worker, no job runner.

    Only the Host ``127.0.0.1:<port>`` is allowed, so ``http://localhost:<port>``
    reaches the same server but gets MLflow's real Host-header 403 on the API.
    """
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    # A connection for every request thread (anyio runs MLflow's Flask app on at most 40): with MLflow's
    # default pool (5 + 10 overflow) the fault suite's 8 concurrent scenarios waited past its 30 s pool
    # timeout on a slow CI machine, and the harness's own reads got HTTP 400 BAD_REQUEST "QueuePool limit
    # ... reached" (the runtime retries that answer: tests/runtime/test_resilience.py).
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_SQLALCHEMYSTORE_POOL_SIZE="40")
    # The server venv must not see the runtime venv's packages.
    env.pop("PYTHONPATH", None)
    cmd = [str(tools_venv() / "bin" / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
           "--artifacts-destination", str(workdir / "artifacts"),
           "--allowed-hosts", f"127.0.0.1:{port}"]
    proc = ManagedProcess("mlflow-server", cmd, workdir / "server.log", env=env, cwd=str(workdir))
    url = f"http://127.0.0.1:{port}"
    return proc.start(f"{url}/health", timeout), url


def start_storage_emulator(workdir: Path, bucket: str, timeout: float = 60.0) -> tuple[ManagedProcess, str]:
    """gcp-storage-emulator, in memory, with one default bucket. Returns (proc, host:port)."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [str(tools_venv() / "bin" / "gcp-storage-emulator"), "start", "--host", "127.0.0.1",
           "--port", str(port), "--in-memory", "--default-bucket", bucket]
    proc = ManagedProcess("gcs-emulator", cmd, workdir / "gcs.log", cwd=str(workdir))
    host = f"http://127.0.0.1:{port}"
    return proc.start(f"{host}/storage/v1/b", timeout), host


def start_metadata_server(workdir: Path, port: int, key_path: Path, email: str,
                          timeout: float = 30.0) -> ManagedProcess:
    cmd = [sys.executable, str(HERE / "metadata_server.py"), "--port", str(port),
           "--key", str(key_path), "--email", email]
    proc = ManagedProcess("metadata-server", cmd, workdir / "metadata.log")
    return proc.start(f"http://127.0.0.1:{port}/", timeout)


def start_fault_proxy(workdir: Path, upstream: str, public_key_path: Path, require_auth: bool,
                      timeout: float = 30.0) -> tuple[ManagedProcess, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, str(HERE / "fault_proxy.py"), "--port", str(port), "--upstream", upstream,
           "--public-key", str(public_key_path), "--audience", url]
    if require_auth:
        cmd.append("--require-auth")
    proc = ManagedProcess(f"fault-proxy({'auth' if require_auth else 'open'})", cmd,
                          workdir / f"proxy-{port}.log")
    return proc.start(f"{url}/__proxy__", timeout), url


def start_gcs_fault_proxy(workdir: Path, upstream: str, timeout: float = 30.0) -> tuple[ManagedProcess, str]:
    """``gcs_fault_proxy.py`` in front of the storage emulator. Returns (proc, http://host:port)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, str(HERE / "gcs_fault_proxy.py"), "--port", str(port), "--upstream", upstream]
    proc = ManagedProcess("gcs-fault-proxy", cmd, workdir / f"gcs-proxy-{port}.log")
    return proc.start(f"{url}/__proxy__", timeout), url
