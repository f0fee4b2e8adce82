"""Vertex AI Training, replayed here: a stand-in for the Vertex JobService at the client boundary.

No Vertex API is reachable from the tests, so ``LocalJobService`` takes the place of
``google.cloud.aiplatform.gapic.JobServiceClient``, the one object TFX's Vertex
training client talks to (``training_clients.VertexJobClient``). Everything on
our side of it is the real code: TFX builds the CustomJob, the tracked launcher
edits it. ``create_custom_job`` checks the CustomJob against Vertex's own proto
type (an unknown field fails as the real API would), records it as JSON, then
runs each replica's container command as a local process, concurrently, with
the environment Vertex gives a replica: the pool's ``container_spec.env``,
``TF_CONFIG`` (chief/worker/ps/evaluator for worker pools 0-3), ``CLUSTER_SPEC``
and ``CLOUD_ML_JOB_ID``, and loopback addresses for the cluster. As Vertex
does, it stops the other replicas (SIGTERM) once one has failed, after
``teardown_seconds``. ``get_custom_job`` answers the job's final state.

``install(directory)`` puts it in place in this process; ``python -m
tests.harness.vertex_training -m MODULE ARGS…`` runs MODULE (TFX's executor
runner) with it installed, for a pipeline task replayed by ``LocalVertex``.
"""
from __future__ import annotations

import itertools
import json
import os
import runpy
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from tests.harness.procs import free_port

POOL_TYPES = ("chief", "worker", "ps", "evaluator")
DIRECTORY_ENV = "TR_TEST_VERTEX_JOBS_DIR"
#: "0": record the CustomJob and answer SUCCEEDED without running its replicas
RUN_ENV = "TR_TEST_VERTEX_JOBS_RUN"
#: what a Vertex replica does not inherit from the process that launched its job
NOT_INHERITED = ("MLFLOW_", "TRAINER_RUNTIME_", "CLOUD_ML_", "AIP_", "TF_CONFIG", "CLUSTER_SPEC", DIRECTORY_ENV,
                 RUN_ENV)
_JOB_IDS = itertools.count(4_000_000_000_000_000_001)


@dataclass
class ReplicaRun:
    name: str
    returncode: int | None
    log: Path
    seconds: float

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def replica_command(argv: list[str]) -> list[str]:
    """The image's ``python`` is this venv's."""
    return [sys.executable if arg == "python" else arg for arg in argv]


def cluster_env(pools: list[dict], layout: str = "vertex") -> list[tuple[str, dict]]:
    """``(replica name, env)`` for every replica of ``pools``.

    ``layout="vertex"``: TF_CONFIG as Vertex sets it (pool 0 is the chief). ``"workers"``: a
    chief-less cluster, every replica a ``worker`` (how MultiWorkerMirroredStrategy runs outside
    Vertex, e.g. on GKE); TensorFlow then makes worker 0 the chief.
    """
    replicas = [(i, r) for i, pool in enumerate(pools) for r in range(int(pool.get("replica_count", 0) or 0))]
    addresses = {key: f"127.0.0.1:{free_port()}" for key in replicas}
    if layout == "workers":
        cluster = {"worker": [addresses[key] for key in replicas]}
        tasks = {key: ("worker", n) for n, key in enumerate(replicas)}
    else:
        cluster = {}
        for (pool, _), address in addresses.items():
            cluster.setdefault(POOL_TYPES[pool], []).append(address)
        tasks = {(pool, r): (POOL_TYPES[pool], r) for pool, r in replicas}
    spec = {f"workerpool{pool}": [] for pool, _ in replicas}
    for (pool, _), address in addresses.items():
        spec[f"workerpool{pool}"].append(address)
    out = []
    for pool, r in replicas:
        kind, index = tasks[(pool, r)]
        out.append((f"{kind}-{index}", {
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": kind, "index": index},
                                     "environment": "cloud"}),
            "CLUSTER_SPEC": json.dumps({"cluster": spec, "task": {"type": f"workerpool{pool}", "index": r},
                                        "environment": "cloud"}),
            **{e["name"]: e["value"] for e in pools[pool].get("container_spec", {}).get("env", [])}}))
    return out


def run_replicas(custom_job: dict, directory: Path, *, job_id: str | None = None, layout: str = "vertex",
                 base_env: dict | None = None, teardown_seconds: float = 60, timeout: float = 600
                 ) -> list[ReplicaRun]:
    """Run every replica of ``custom_job`` here, concurrently, and wait for them; logs in ``directory``."""
    pools = custom_job["job_spec"]["worker_pool_specs"]
    job_id = job_id or str(next(_JOB_IDS))
    base = {k: v for k, v in (base_env if base_env is not None else os.environ).items()
            if not k.startswith(NOT_INHERITED)}
    directory.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    procs = []
    for (name, env), pool in zip(cluster_env(pools, layout), _pool_of_each(pools)):
        log = directory / f"{name}.log"
        command = replica_command(pools[pool]["container_spec"]["command"] + pools[pool]["container_spec"].get("args", []))
        with log.open("w") as out:
            proc = subprocess.Popen(command, env={**base, **env, "CLOUD_ML_JOB_ID": job_id}, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        procs.append((name, proc, log))
    ended: dict[str, float] = {}
    failed_at = None
    while len(ended) < len(procs):
        now = time.monotonic()
        for name, proc, _ in procs:
            if name not in ended and proc.poll() is not None:
                ended[name] = now - started
                if proc.returncode and failed_at is None:
                    failed_at = now
        if failed_at is not None and now - failed_at > teardown_seconds or now - started > timeout:
            for name, proc, _ in procs:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
            failed_at = float("inf")  # once
        time.sleep(0.2)
    return [ReplicaRun(name, proc.returncode, log, ended[name]) for name, proc, log in procs]


def _pool_of_each(pools: list[dict]) -> list[int]:
    return [i for i, pool in enumerate(pools) for _ in range(int(pool.get("replica_count", 0) or 0))]


class LocalJobService:
    """Stands in for ``google.cloud.aiplatform.gapic.JobServiceClient`` (see the module docstring)."""

    jobs: dict[str, SimpleNamespace] = {}

    def __init__(self, client_options: dict | None = None, *, directory: Path, run: bool = True, **_: object):
        self.client_options = client_options or {}
        self.directory = Path(directory)
        self.run = run

    def create_custom_job(self, parent: str, custom_job: dict) -> SimpleNamespace:
        from google.cloud.aiplatform_v1.types import CustomJob
        from google.cloud.aiplatform_v1.types.job_state import JobState

        checked = CustomJob.to_dict(CustomJob(custom_job))  # an unknown or mistyped field raises, as the API would
        job_id = str(next(_JOB_IDS))
        name = f"{parent}/customJobs/{job_id}"
        self.directory.mkdir(parents=True, exist_ok=True)
        record = {"parent": parent, "name": name, "api_endpoint": self.client_options.get("api_endpoint"),
                  "custom_job": checked}
        (self.directory / f"custom_job_{job_id}.json").write_text(json.dumps(record, indent=2))
        replicas = run_replicas(checked, self.directory / job_id, job_id=job_id) if self.run else []
        failed = [r.name for r in replicas if r.returncode]
        state = JobState.JOB_STATE_FAILED if failed else JobState.JOB_STATE_SUCCEEDED
        LocalJobService.jobs[name] = SimpleNamespace(name=name, state=state, error=SimpleNamespace(
            message=f"replica(s) {', '.join(failed)} failed" if failed else ""))
        return SimpleNamespace(name=name)

    def get_custom_job(self, name: str, retry: object = None) -> SimpleNamespace:
        return LocalJobService.jobs[name]


def install(directory: Path, run: bool = True) -> None:
    """Make TFX's Vertex training client talk to ``LocalJobService`` in this process."""
    import functools

    from tfx.extensions.google_cloud_ai_platform import training_clients

    training_clients.gapic.JobServiceClient = functools.partial(LocalJobService, directory=directory, run=run)


def captured_jobs(directory: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(directory).glob("custom_job_*.json"))]


if __name__ == "__main__":  # python -m tests.harness.vertex_training (-m MODULE | SCRIPT) ARGS...
    install(Path(os.environ[DIRECTORY_ENV]), run=os.environ.get(RUN_ENV, "1") != "0")
    if sys.argv[1] == "-m":
        module = sys.argv[2]
        sys.argv = [module, *sys.argv[3:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        script = sys.argv[1]
        sys.argv = sys.argv[1:]
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
        runpy.run_path(script, run_name="__main__")
