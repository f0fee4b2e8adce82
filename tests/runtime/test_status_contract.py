"""The status files' contract (status.contract): what the reporter really writes is valid against the
strict schemas at every stage, on the chief and on a replica; each schema refuses a missing required field,
a wrong stage, a wrong type, and (strict) an undeclared field; the schemas are valid draft 2020-12.

No server: the close that ends degraded sends to a loopback port nobody listens on.
"""
from __future__ import annotations

import copy
import datetime as dt
import json
import signal
import time

import jsonschema
import pytest

from tests.harness import status_files
from tests.harness.procs import free_port
from tests.runtime.helpers import deps
from trainer_runtime.core.config import load_config
from trainer_runtime.core.errors import Killed, TrackingUnavailableError, UserCodeError
from trainer_runtime.run import cluster, outcome, signals
from trainer_runtime.run.closing import close_run
from trainer_runtime.run.session import run_session
from trainer_runtime.status import contract
from trainer_runtime.status.reporter import INFO_FILE, SCHEMA_VERSION, STATUS_FILE, StatusReporter
from trainer_runtime.status.storage import LocalDir, open_dir
from trainer_runtime.tfx.trials import Summary
from trainer_runtime.tracking.logger import Counts
from trainer_runtime.tracking.runs import TrackingContext

INFO = {"run_id": "abc123", "experiment_id": "3", "experiment_name": "recommender",
        "tracking_uri": "http://mlflow.example", "run_url": "http://mlflow.example/#/experiments/3/runs/abc123"}
#: how a run ends -> what ended it (None: it returned)
ENDINGS = {"completed": lambda: None, "failed": lambda: UserCodeError("boom", hint="fix the code"),
           "killed": lambda: Killed(signal.SIGTERM), "sys.exit(3)": lambda: SystemExit(3),
           "a bug": lambda: ValueError("bad value")}
WORKER = {"cluster": {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2", "127.0.0.1:3"]},
          "task": {"type": "worker", "index": 1}}


class CheckedDir(LocalDir):
    """A local status dir that validates every status file as it is written, so a file that a later
    write replaces (the close's first, ``closing``, write) is checked too. It writes what it is given
    and keeps what was wrong in ``invalid`` (the reporter would swallow a raise)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.written: list[tuple[str, dict]] = []
        self.invalid: list[str] = []

    def write_text(self, name: str, text: str, deadline: float | None = None) -> str:
        if contract.document_of(name):
            try:
                status_files.check_text(f"{self.describe()}/{name}", text)
            except AssertionError as exc:
                self.invalid.append(str(exc))
            self.written.append((name, json.loads(text)))
        return super().write_text(name, text, deadline=deadline)

    def said(self, name: str = STATUS_FILE) -> list[tuple]:
        """(stage, tracking state) of each write of ``name``, once every write was valid."""
        assert self.invalid == []
        return [(c["stage"], (c.get("tracking") or {}).get("state")) for n, c in self.written if n == name]


def _published(document: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(contract.schema(document))


def _written(folder) -> dict[str, dict]:
    """Every status file in ``folder``, each checked against its strict schema."""
    return {path.name: status_files.check(path) for path in status_files.status_files(folder)}


def _counts() -> dict:
    counts = Counts()
    counts.accept(7)
    counts.spooled(6)
    counts.delivered(4)
    counts.reject("not_a_number", name="loss", detail="'abc'")
    counts.drop("duplicate_metric", name="acc")
    counts.non_finite_seen()
    counts.artifacts.update(accepted=1, sent=1, bytes_sent=120)
    return counts.as_dict()


def _terminal_fields(decided: outcome.Outcome, spool_dir: str) -> dict:
    """What a closed TFX Trainer run (and a Tuner's) adds to its terminal status, as closing passes it."""
    trials = Summary(count=2, completed=1, failed=1, runs={"t0": "r0", "t1": "r1"})
    trials.unsent.append({"trial_id": "t1", "run_id": "r1", "pending": 2, "run_closed": False,
                          "spool_dir": spool_dir, "spool_uri": "gs://b/trial-t1/mlflow_spool.jsonl",
                          "replay_command": "trainer-runtime replay gs://b/trial-t1"})
    return {"exit_code": decided.exit_code, "logging": _counts(),
            "tracking": {"state": "closing", "spool_dir": spool_dir},
            "final_metrics": {"loss": 0.25, "auc": float("nan"), "gain": float("inf")},
            "callback": {"seconds": 0.01, "epochs": 2, "ms_per_epoch": 5.0, "steps": 0},
            "system_metrics": {"interval": 10.0, "samples": 3, "gpu": False},
            "datasets": {"state": "logged", "names": ["examples", "schema"]},
            "model": {"state": "recorded", "serving_model_uri": "gs://b/model", "model_run_uri": None,
                      "artifacts": ["mlflow-artifacts:/model/model_reference.json"],
                      "signatures": ["serving_default"], "seconds": 0.4},
            "model_registry": {"state": "registered", "name": "recs", "version": "4", "source": "gs://b/model",
                               "serving_model_uri": "gs://b/model"},
            "replicas": {"worker-1": {"stage": "failed", "exit_code": 4, "error": {"type": "UserCodeError",
                                                                                   "message": "boom"}},
                         "worker-2": {"stage": None, "unreadable": "Expecting value"}},
            "trials": trials.as_dict(),
            "best": {"trial_id": "t0", "score": float("nan"), "run_id": "r0", "hyperparameters": {"lr": 0.1},
                     "artifact_error": "HTTP 503"}}


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_the_reporters_output_is_valid_at_every_stage(tmp_path, ending):
    """Driven as chief.py and closing.py drive it: every write is valid, including the training file a
    SIGKILL would leave (stale once its heartbeat is old) and the degraded and replayed ends."""
    folder, spool = CheckedDir(str(tmp_path / "status")), str(tmp_path / "spool")
    reporter = StatusReporter(folder, "https://user:pw@mlflow.example/p?token=x#f")
    reporter.stage("initializing", fatal=True)
    assert folder.written[0][1]["tracking_uri"] == "https://mlflow.example/p"
    reporter.run_opened(INFO, "3.1.0", attempt=2)
    reporter.stage("training", heartbeat_interval=1.0, tracking={"state": "ok", "spool_dir": spool})
    assert reporter.heartbeat({"epoch": 1, "step": 10, "points_accepted": 20, "points_sent": 18, "points_pending": 2})
    replay_command, spool_uri = f"trainer-runtime replay {folder}", f"{folder}/mlflow_spool.jsonl"
    assert reporter.note_tracking({"state": "ok", "spool_dir": spool, "replay_command": replay_command,
                                   "shipped": {"spool_uri": spool_uri, "acked": 3, "last_seq": 9,
                                               "pending_records": 6, "at": "2026-01-02T03:04:05Z"}})
    killed_here = folder.written[-1][1]
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)
    assert status_files.labels(STATUS_FILE, killed_here, now=later) == ["training", "stale", "tracking ok"]

    decided = outcome.decide(ENDINGS[ending]())
    fields = _terminal_fields(decided, spool)
    reporter.finish(decided.stage, decided.error, deadline=1.0, **fields)
    fields["tracking"] = {"state": "degraded", "pending": 2, "run_closed": False, "spool_dir": spool,
                          "spool_uri": spool_uri, "replay_command": replay_command, "close_seconds": 1.5}
    reporter.finish(decided.stage, decided.error, deadline=1.0, **fields)
    reporter.write_info({**INFO, "model_version": {"name": "recs", "version": "4", "source": "gs://b/model"}})
    ended = folder.written[-2][1]
    assert ended["schema_version"] == SCHEMA_VERSION == 2 and ended["final_metrics"]["auc"] == "NaN"

    _replayed(folder, copy.deepcopy(ended))
    assert folder.said() == [("initializing", None), ("initialized", None), ("training", "ok"), ("training", "ok"),
                             ("training", "ok"), (decided.stage, "closing"), (decided.stage, "degraded"),
                             (decided.stage, "replayed")]
    assert [content for name, content in folder.written if name == INFO_FILE][0] == INFO
    assert _written(tmp_path / "status")[STATUS_FILE]["tracking"]["state"] == "replayed"


def _replayed(folder: LocalDir, status: dict) -> None:
    """What `trainer-runtime replay <status dir>` rewrites once everything landed (replay._update_status)."""
    from trainer_runtime.commands.replay import Located, _update_status
    from trainer_runtime.tracking.logger import LoggerReport
    from trainer_runtime.tracking.shipping import UPLOADED_ACKED, UPLOADED_SPOOL

    report = LoggerReport({**status["logging"], "pending": 0, "sent": 2}, run_closed=True)
    _update_status(Located(folder, UPLOADED_SPOOL, UPLOADED_ACKED, status), report, 2)


def test_a_close_that_cannot_reach_the_server_ends_degraded_and_valid(tmp_path):
    """closing.close_run itself, against a port nobody listens on: the status says degraded, with the
    spool shipped beside it."""
    config = load_config({"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
                          "TRAINER_RUNTIME_SPOOL_DIR": str(tmp_path / "spool")})
    ctx = TrackingContext(None, config, "3", "recommender", "abc123", "run", "3.1.0", "none")
    folder = CheckedDir(str(tmp_path / "status"))
    reporter = StatusReporter(folder, config.tracking_uri)
    reporter.run_opened(ctx.info(), ctx.server_version)
    reporter.stage("training", heartbeat_interval=30.0, tracking={"state": "ok", "spool_dir": config.spool_dir})
    ctx.start_logger().log_metrics({"loss": 0.5}, 0)
    started = time.monotonic()
    close_run(ctx, reporter, outcome.decide(Killed(signal.SIGTERM)),
              signals.CloseBudget(2.0, 2.0, signals.SignalState()), None)
    assert time.monotonic() - started < 10
    assert folder.said() == [("initialized", None), ("training", "ok"), ("killed", "closing"), ("killed", "degraded")]
    status = _written(tmp_path / "status")[STATUS_FILE]
    assert status["tracking"]["run_closed"] is False and status["tracking"]["spool_uri"].startswith(str(tmp_path))


@pytest.mark.parametrize("ending", ["completed", "failed", "killed"])
def test_a_replicas_file_is_valid(tmp_path, ending):
    """A worker's own file, written by session.run_session (no server: a worker does not track)."""
    env = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}", "TF_CONFIG": json.dumps(WORKER)}
    during = []

    def train(ctx):
        during.append(_written(tmp_path)["mlflow_status.worker-1.json"])
        error = ENDINGS[ending]()
        if error is not None:
            raise error

    run_session(lambda: load_config(env), train, status_dir=str(tmp_path), deps=deps(env, exit_after_signal=False))
    ended = _written(tmp_path)["mlflow_status.worker-1.json"]
    assert (during[0]["stage"], ended["stage"], ended["replica"]) == ("training", ending, "worker-1")
    assert status_files.labels("mlflow_status.worker-1.json", ended) == [f"replica {ending}"]


def test_a_preflight_failure_before_any_run_is_valid(tmp_path):
    """The chief's `failed` before the run exists: the run's fields are null."""
    env = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}", "TRAINER_RUNTIME_PREFLIGHT_TIMEOUT": "1",
           "TRAINER_RUNTIME_STATUS_DIR": str(tmp_path)}
    ended = run_session(lambda: load_config(env), lambda ctx: None, deps=deps(env))
    assert isinstance(ended.error, TrackingUnavailableError)
    status = _written(tmp_path)[STATUS_FILE]
    assert status["stage"] == "failed" and status["run_id"] is None and status["error"]["fault"] == "platform"


# --- the schemas themselves -------------------------------------------------------------------------

@pytest.fixture
def examples(tmp_path) -> dict[str, dict]:
    """A valid file of each document, as the reporter writes it (a failed end for the statuses)."""
    decided = outcome.decide(UserCodeError("boom"))
    reporter = StatusReporter(open_dir(str(tmp_path)), "http://mlflow.example")
    reporter.run_opened(INFO, "3.1.0")
    reporter.finish(decided.stage, decided.error, **_terminal_fields(decided, str(tmp_path / "spool")))
    role = cluster.current({"TF_CONFIG": json.dumps(WORKER)})
    replica = StatusReporter(open_dir(str(tmp_path)), "http://mlflow.example", status_file=role.status_file())
    replica.finish(decided.stage, decided.error, exit_code=decided.exit_code, **role.describe())
    files = _written(tmp_path)
    return {"mlflow_status": files[STATUS_FILE], "mlflow_info": files[INFO_FILE],
            "mlflow_status.replica": files[role.status_file()]}


@pytest.mark.parametrize("document", sorted(contract.DOCUMENTS))
def test_each_schema_is_valid_draft_2020_12_with_a_stable_id(document):
    for strict in (False, True):
        schema = contract.schema(document, strict)
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"].startswith(f"{contract.ID_BASE}/{document}.v{SCHEMA_VERSION}")
        assert schema["title"] and all(rule in schema["description"] for rule in contract.compatibility_rules())


@pytest.mark.parametrize("document", sorted(contract.DOCUMENTS))
def test_each_schema_refuses_a_missing_required_field(examples, document):
    required = contract.schema(document)["required"]
    assert len(required) >= 5
    for name in required:
        content = {k: v for k, v in examples[document].items() if k != name}
        for validator in (_published(document), status_files.validator(document)):
            assert not validator.is_valid(content), f"{document} without {name} passed"


@pytest.mark.parametrize("document,stage", [("mlflow_status", "stale"), ("mlflow_status", "running"),
                                            ("mlflow_status.replica", "initializing"), ("mlflow_status", None)])
def test_a_status_refuses_a_stage_it_cannot_have(examples, document, stage):
    content = {**examples[document], "stage": stage}
    assert not _published(document).is_valid(content)
    assert "stage" in " ".join(status_files.errors(document, content))


@pytest.mark.parametrize("document,field,value", [
    ("mlflow_status", "schema_version", 1), ("mlflow_status", "schema_version", "2"),
    ("mlflow_status", "exit_code", "4"), ("mlflow_status", "run_id", 7), ("mlflow_status", "timestamps", []),
    ("mlflow_status", "tracking", {"state": "lost"}), ("mlflow_status", "logging", {"accepted": -1}),
    ("mlflow_status", "final_metrics", {"loss": "nan"}), ("mlflow_status", "error", {"type": "X"}),
    ("mlflow_status.replica", "task_index", "1"), ("mlflow_status.replica", "cluster", {"worker": "2"}),
    ("mlflow_info", "run_id", None), ("mlflow_info", "model_version", {"name": "recs"}),
])
def test_a_status_refuses_a_wrong_type(examples, document, field, value):
    content = {**examples[document], field: value}
    assert not _published(document).is_valid(content)
    assert field in " ".join(status_files.errors(document, content))


@pytest.mark.parametrize("stage,error,drop", [("completed", "the failed one's", ()), ("failed", None, ()),
                                              ("killed", "the failed one's", ("exit_code",)),
                                              ("training", "the failed one's", ())])
def test_a_terminal_status_has_its_exit_code_and_an_error_only_when_it_failed(examples, stage, error, drop):
    content = {**examples["mlflow_status"], "stage": stage}
    if error is None:
        content["error"] = None
    content = {k: v for k, v in content.items() if k not in drop}
    assert not _published("mlflow_status").is_valid(content)
    assert _published("mlflow_status").is_valid({**content, "stage": "failed", "exit_code": 4,
                                                 "error": examples["mlflow_status"]["error"]})


@pytest.mark.parametrize("document", sorted(contract.DOCUMENTS))
def test_strict_refuses_an_undeclared_field_the_published_schema_accepts(examples, document):
    for content in ({**examples[document], "new_field": 1},
                    {**examples[document], "tracking": {"state": "ok", "new_field": 1}}
                    if document == "mlflow_status" else {**examples[document], "extra": {}}):
        assert _published(document).is_valid(content), "a reader must accept a field it does not know"
        assert any("were unexpected" in e or "was unexpected" in e for e in status_files.errors(document, content))


def test_file_names_say_the_document():
    assert contract.document_of("mlflow_status.json") == "mlflow_status"
    assert contract.document_of("mlflow_info.json") == "mlflow_info"
    assert contract.document_of("mlflow_status.worker-1.json") == "mlflow_status.replica"
    assert contract.document_of("mlflow_status.schema.json") is None
    assert contract.document_of("mlflow_spool.jsonl") is None


def test_the_compatibility_rules_are_stated():
    rules = " ".join(contract.compatibility_rules())
    for words in ("ignore the fields they do not know", "optional field", "closed", "bumps `schema_version`",
                  "`stale` is not a stage"):
        assert words in rules
