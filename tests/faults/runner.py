"""Run one fault scenario for real and measure it: a trainer process, its own fault proxy in
front of the live MLflow server, a driver that injects the fault on the trainer's timeline.

A scenario's row: points expected (what the trainer's epochs produced), on the server,
in the spool the run left, lost (neither), duplicates, the training stall, the close
time (fit returned, or the signal, to process exit), the final stage, exit code and
tracking state, and the run's status on the server.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tests.harness import servers
from tests.harness.control import Control

REPO = Path(__file__).resolve().parents[2]
#: the preflight's budget in every row but the cold start's: measured up to 20.8 s with the three suites of
#: `make test` on 2 cores (the server's one worker answering 8 trainers), where 30 s left too little slack
PREFLIGHT_TIMEOUT = "60"
#: the secret every open-proxy scenario carries as MLFLOW_TRACKING_TOKEN; grepped everywhere after.
SECRET = uuid.uuid4().hex + uuid.uuid4().hex


@dataclass
class Shared:
    """What every scenario uses: the live MLflow server and the harness's keys and servers."""

    mlflow_url: str
    workdir: Path
    public_key: Path
    interactions: Path | None = None
    metadata: Any = None
    gcs_proxy: Any = None
    gcs_emulator: str | None = None
    gcs_bucket: str | None = None
    #: MLflow servers of the scenarios that have their own (``Scenario.own_server``), stopped with the session
    servers: list = field(default_factory=list)


@dataclass
class Scenario:
    name: str
    drive: Callable[["Run"], None] = lambda run: None
    tracker: str = "runtime"            # runtime | mlflow (MLflow's own MlflowCallback)
    wiring: str = "standalone"          # standalone | executor | shim | forwarder
    epochs: int = 8
    epoch_seconds: float = 1.0
    faults: dict = field(default_factory=dict)   # proxy faults before the trainer starts
    env: dict = field(default_factory=dict)
    auth: bool = False                  # Cloud Run stand-in: the proxy checks Google ID tokens
    timeout: float = 600.0              # the process is killed after this (and the row says so)
    target: str = "fit"
    #: the user-code rows: the custom loop of tests/faults/user_loop.py calling MLflow's own API
    loop: bool = False
    expect: dict = field(default_factory=dict)
    #: runs after the trainer exited and was measured, with the proxy healed: (run, row)
    after: Callable[["Run", "Row"], None] | None = None
    #: runs by itself, after the others: its load (20 processes importing TensorFlow at once on 2 cores)
    #: would measure itself in the timing rows beside it
    alone: bool = False
    #: talks to an MLflow server of its own, not the shared one: SQLite takes one writer at a time, and a
    #: replay of ~126,000 points in 1,000-metric batches held the shared server's database for minutes
    #: (stop 25's CI: 136 `database is locked`, and the rows beside it read-timed out for 90 s on a healthy
    #: server)
    own_server: bool = False

    @property
    def slug(self) -> str:
        name = f"{self.name} {self.tracker}" if self.tracker != "runtime" else self.name
        return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


@dataclass
class Row:
    scenario: str
    tracker: str
    wiring: str
    expected: int = 0
    on_server: int = 0
    in_spool: int = 0
    lost: int = 0
    duplicates: int = 0
    stall_s: float = 0.0
    close_s: float | None = None
    exit_s: float | None = None
    stage: str | None = None
    exit_code: int | None = None
    tracking: str | None = None
    run_status: str | None = None
    notes: list[str] = field(default_factory=list)
    status: dict | None = None
    run_id: str | None = None
    #: the MLflow server the row's run is on
    mlflow_url: str | None = None
    files: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


class Run:
    """One scenario's trainer process and proxy, with the driver's view of its timeline."""

    def __init__(self, scenario: Scenario, shared: Shared) -> None:
        self.scenario = scenario
        self.shared = shared
        self.dir = shared.workdir / scenario.slug
        self.dir.mkdir(parents=True, exist_ok=True)
        self.status_dir = str(self.dir / "status")
        self.spool_dir = str(self.dir / "spool")
        self.marks_path = self.dir / "marks.jsonl"
        self.experiment = f"faults-{scenario.slug}-{uuid.uuid4().hex[:6]}"
        self.mlflow_url = shared.mlflow_url
        if scenario.own_server:
            server, self.mlflow_url = servers.start_mlflow(self.dir / "mlflow")
            shared.servers.append(server)
        self.proxy_proc, self.proxy_url = servers.start_fault_proxy(self.dir, self.mlflow_url,
                                                                    shared.public_key, scenario.auth)
        self.proxy = Control(f"{self.proxy_url}/__proxy__")
        if scenario.faults:
            self.proxy.set(**scenario.faults)
        self.proc: subprocess.Popen | None = None
        self.signal_at: float | None = None
        self.exited_at: float | None = None
        self.started_at = 0.0

    # --- what the driver uses ---------------------------------------------------------
    def marks(self) -> list[dict]:
        try:
            return [json.loads(line) for line in self.marks_path.read_text().splitlines() if line.strip()]
        except (FileNotFoundError, ValueError):
            return []

    def wait(self, predicate: Callable[[], Any], timeout: float = 300.0, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the trainer exited ({self.proc.returncode}) while waiting for {what}")
            time.sleep(0.05)
        raise TimeoutError(f"{self.scenario.name}: no {what} after {timeout:.0f}s")

    def wait_epoch(self, epoch: int, timeout: float = 600.0) -> dict:
        # 600 s: a loaded CI machine took over 300 s to the executor wiring's step 20 (TFX's pipeline to
        # the Trainer, then autolog's fits); the row's own timeout still says when a trainer hung
        return self.wait(lambda: next((m for m in self.marks() if m.get("epoch") == epoch), None),
                         timeout, f"epoch {epoch}")

    def status(self) -> dict | None:
        """The status file, parsed strictly (a file that is not JSON raises, and fails the row)."""
        where = self.scenario.env.get("TRAINER_RUNTIME_STATUS_DIR", self.status_dir)
        try:
            if where.startswith("gs://"):
                from google.cloud import storage

                os.environ["STORAGE_EMULATOR_HOST"] = self.shared.gcs_emulator or ""
                bucket, _, prefix = where[len("gs://"):].partition("/")
                text = storage.Client(project="test-project").bucket(bucket).blob(
                    f"{prefix}/mlflow_status.json").download_as_text()
            else:
                text = Path(where, "mlflow_status.json").read_text()
        except Exception:  # not written yet
            return None
        return json.loads(text, parse_constant=_reject_constant)

    def send(self, signum: int) -> None:
        self.signal_at = time.time()
        assert self.proc is not None
        self.proc.send_signal(signum)

    # --- lifecycle ----------------------------------------------------------------------
    def environment(self) -> dict[str, str]:
        sc = self.scenario
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MLFLOW_", "TRAINER_RUNTIME_", "AIP_", "CLOUD_ML_", "FAULT_"))}
        env.update(PYTHONPATH=str(REPO), TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3", PYTHONFAULTHANDLER="1",
                   MLFLOW_TRACKING_URI=self.proxy_url, MLFLOW_EXPERIMENT_NAME=self.experiment,
                   FAULT_MARKS=str(self.marks_path), FAULT_EPOCHS=str(sc.epochs),
                   FAULT_EPOCH_SECONDS=str(sc.epoch_seconds))
        if sc.tracker == "runtime":
            env.update(TRAINER_RUNTIME_STATUS_DIR=self.status_dir, TRAINER_RUNTIME_SPOOL_DIR=self.spool_dir,
                       TRAINER_RUNTIME_HEARTBEAT_INTERVAL="2",
                       TRAINER_RUNTIME_FLUSH_TIMEOUT=os.environ.get("TR_FAULT_FLUSH_TIMEOUT", "20"),
                       TRAINER_RUNTIME_PREFLIGHT_TIMEOUT=PREFLIGHT_TIMEOUT)
        if sc.loop:
            env["FAULT_RUN_FN"] = "tests.faults.user_loop.run_fn"
        if not sc.auth:
            env["MLFLOW_TRACKING_TOKEN"] = SECRET  # the open proxy ignores it; nothing may print it
        env.update(sc.env)
        return env

    def command(self) -> list[str]:
        sc = self.scenario
        if sc.tracker == "mlflow":
            return [sys.executable, "-m", "tests.faults.user_loop" if sc.loop else "tests.faults.trainer",
                    "plain" if sc.loop else "peer"]
        if sc.wiring == "standalone":
            target = "tests.faults.user_loop:loop" if sc.loop else f"tests.faults.trainer:{sc.target}"
            return [sys.executable, "-m", "trainer_runtime.commands.cli", "run", target]
        return [sys.executable, "-m", "tests.faults.tfx_wiring", sc.wiring, str(self.dir),
                str(self.shared.interactions)]

    def execute(self) -> Row:
        sc = self.scenario
        out = open(self.dir / "stdout.log", "w")
        err = open(self.dir / "stderr.log", "w")
        self.started_at = time.time()
        self.proc = subprocess.Popen(self.command(), env=self.environment(), stdout=out, stderr=err,
                                     cwd=str(REPO), start_new_session=True)
        waiter = threading.Thread(target=self._wait_exit, daemon=True)
        waiter.start()
        notes = []
        try:
            sc.drive(self)
        except Exception as exc:  # the row says the driver failed; the test fails on it
            notes.append(f"driver: {type(exc).__name__}: {exc}")
        waiter.join(timeout=max(1.0, sc.timeout - (time.time() - self.started_at)))
        if self.proc.poll() is None:
            err.flush()
            notes.append(f"did not exit within {sc.timeout:.0f}s; killed; {self._last_mark()}; "
                         f"stacks: {kill_and_dump(self.proc, self.dir / 'stderr.log')}")
            self.exited_at = None
        out.close()
        err.close()
        self.proxy.set(reset=True)
        row = measure(self)
        row.notes[:0] = notes
        if sc.after is not None:
            try:
                sc.after(self, row)
            except Exception as exc:
                row.notes.append(f"after: {type(exc).__name__}: {exc}")
        return row

    def _last_mark(self) -> str:
        marks = self.marks()
        epochs = [m for m in marks if "epoch" in m]
        if not epochs:
            return f"no epoch marked ({time.time() - self.started_at:.0f}s after the start)"
        ended = next((m for m in marks if "fit_returned" in m), None)
        return (f"last epoch {epochs[-1]['epoch']} at +{epochs[-1]['t'] - self.started_at:.0f}s"
                + (f", training returned at +{ended['fit_returned'] - self.started_at:.0f}s" if ended else ""))

    def _wait_exit(self) -> None:
        assert self.proc is not None
        self.proc.wait()
        self.exited_at = time.time()

    def stop(self) -> None:
        self.proxy_proc.stop()


def kill_and_dump(proc: subprocess.Popen, log: Path) -> str:
    """Kill a hung trainer's process group: SIGABRT first (PYTHONFAULTHANDLER is on, so every thread's
    stack goes to ``log``, its stderr), then SIGKILL. Returns where each thread was (``stack_summary``)."""
    before = log.stat().st_size
    for signum, wait in ((signal.SIGABRT, 5.0), (signal.SIGKILL, 60.0)):
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    proc.wait()
    with open(log, errors="replace") as fh:
        fh.seek(before)
        return stack_summary(fh.read())


def stack_summary(dump: str, frames: int = 3, limit: int = 1500) -> str:
    """faulthandler's dump, each thread as its ``frames`` innermost ``function (file:line)``."""
    threads: list[str] = []
    current: list[str] | None = None
    for line in dump.splitlines():
        line = line.strip()
        if line.startswith(("Thread 0x", "Current thread 0x")):
            current = []
            threads.append("")
            continue
        if current is not None and line.startswith("File ") and len(current) < frames:
            where, _, function = line.partition(" in ")
            path, _, number = where.rpartition(", line ")
            name = Path(path[len("File "):].strip('"')).name
            current.append(f"{function} ({name}:{number})")
            threads[-1] = " < ".join(current)
    return " | ".join(threads)[:limit] if threads else "no stack dump"


def _reject_constant(name: str):
    raise ValueError(f"status file holds a bare {name}: not strict JSON")


def _client(url: str):
    from mlflow import MlflowClient

    return MlflowClient(url)


def measure(run: Run) -> Row:
    """Count points against the real server (not the proxy), read the status and the spool."""
    from trainer_runtime.tracking.logger import sanitize_name
    from trainer_runtime.tracking.spool import parse

    sc = run.scenario
    peer_name = "plain MLflow" if sc.loop else "MLflow MlflowCallback"
    row = Row(sc.name, peer_name if sc.tracker == "mlflow" else "trainer-runtime", sc.wiring,
              exit_code=run.proc.returncode if run.proc else None)
    marks = run.marks()
    epochs = [m for m in marks if "epoch" in m]
    fit_returned = next((m["fit_returned"] for m in marks if "fit_returned" in m), None)
    begin = run.signal_at or fit_returned
    if run.exited_at is not None and begin:
        row.exit_s = round(run.exited_at - begin, 2)
    gaps = [b["t"] - a["t"] - sc.epoch_seconds for a, b in zip(epochs, epochs[1:])]
    row.stall_s = round(max(gaps), 2) if gaps else 0.0
    expected = {(key, m["epoch"]) for m in epochs for key in m["keys"] if not key.startswith("k0")}
    status = run.status()
    row.status = status
    if status:
        row.stage, row.run_id = status.get("stage"), status.get("run_id")
        row.tracking = (status.get("tracking") or {}).get("state")
        row.close_s = (status.get("tracking") or {}).get("close_seconds")
        if sc.tracker == "runtime" and status.get("exit_code") != row.exit_code and (row.exit_code or 0) >= 0:
            row.notes.append(f"status exit_code {status.get('exit_code')} != process {row.exit_code}")
    peer = next((m["run_id"] for m in marks if "run_id" in m), None)
    row.run_id = row.run_id or peer
    if sc.tracker == "mlflow":
        row.close_s = row.exit_s  # MLflow's end_run happens inside the process's last seconds
    on_server: set = set()
    row.mlflow_url = run.mlflow_url
    client = _client(run.mlflow_url)
    if row.run_id:
        info = client.get_run(row.run_id)
        row.run_status = info.info.status
        names = {key for key, _ in expected}
        for key in names:
            history = client.get_metric_history(row.run_id, sanitize_name(key))
            steps = [m.step for m in history]
            row.duplicates += len(steps) - len(set(steps))
            on_server |= {(key, step) for step in steps}
        row.extra["server_keys"] = len(info.data.metrics)
    in_spool: set = set()
    for spool_dir, names in ((run.status_dir, ("mlflow_spool.jsonl", "mlflow_spool.acked")),
                             (run.spool_dir, ("spool.jsonl", "spool.acked"))):
        path = Path(spool_dir, names[0])
        if path.exists():
            acked = Path(spool_dir, names[1])
            content = parse(path.read_text(), acked.read_text() if acked.exists() else "")
            in_spool |= {(r["key"], r["step"]) for r in content.pending() if r["k"] == "m"}
            if spool_dir == run.status_dir:
                break
    expected_clean = {(sanitize_name(k), s) for k, s in expected}
    on_server_clean = {(sanitize_name(k), s) for k, s in on_server}
    row.expected = len(expected_clean)
    row.on_server = len(expected_clean & on_server_clean)
    row.in_spool = len((expected_clean - on_server_clean) & in_spool)
    row.lost = row.expected - row.on_server - row.in_spool
    if sc.loop:
        measure_user_code(run, row, marks, client)
    row.files = [str(p) for p in run.dir.rglob("*") if p.is_file() and p.suffix in (".log", ".json", ".jsonl",
                                                                                     ".acked")]
    return row


def measure_user_code(run: Run, row: Row, marks: list[dict], client: Any) -> None:
    """The user-code rows' own columns: the MLflow calls' timings on the loop's thread, its artifacts
    (expected, on the server, in the spool), the peak RSS growth."""
    from trainer_runtime.tracking.spool import parse

    end = next((m for m in marks if "longest" in m), None)
    if end is None:
        row.extra["user"] = {"finished": False}
        return
    expected = set(end["artifacts"])
    on_server = artifact_paths_on_server(client, row.run_id, expected) if row.run_id else set()
    in_spool: set = set()
    for spool_dir, name, acked in ((run.status_dir, "mlflow_spool.jsonl", "mlflow_spool.acked"),
                                   (run.spool_dir, "spool.jsonl", "spool.acked")):
        path = Path(spool_dir, name)
        if path.exists():
            acked_path = Path(spool_dir, acked)
            content = parse(path.read_text(), acked_path.read_text() if acked_path.exists() else "")
            in_spool |= {"/".join(p for p in (r["path"], r["name"]) if p) for r in content.pending() if r["k"] == "a"}
            break
    row.extra["user"] = {"finished": True, "longest_s": round(end["longest"], 4), "total_s": round(end["total"], 3), "stall_s": round(end.get("stall", end["total"]), 3),
                         "calls": end["calls"], "artifacts_expected": len(expected),
                         "artifacts_on_server": len(on_server), "artifacts_in_spool": len((expected - on_server) & in_spool),
                         "artifacts_lost": len(expected - on_server - in_spool),
                         "rss_growth_mb": round(end.get("rss_growth_mb", 0.0), 1)}


def artifact_paths_on_server(client: Any, run_id: str, expected: set) -> set:
    found: set = set()
    for folder in {a.rsplit("/", 1)[0] for a in expected}:
        found |= {f.path for f in client.list_artifacts(run_id, folder)} & expected
    return found


def run_scenario(scenario: Scenario, shared: Shared) -> Row:
    run = Run(scenario, shared)
    try:
        return run.execute()
    finally:
        run.stop()
