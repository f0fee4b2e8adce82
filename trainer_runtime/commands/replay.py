"""`trainer-runtime replay <status dir | spool dir>`: land what a degraded run left in its spool.

A run whose server was unreachable at the end uploads its spool beside the
status (``mlflow_spool.jsonl`` + ``mlflow_spool.acked``); a trainer killed
without a close leaves its local spool (``spool.jsonl`` + ``spool.acked``).
Replay sends every record after the acknowledged ``seq`` in order, the run's
end last, then writes the new acknowledgement back, so a second replay sends
nothing. (The server also keeps one row per identical metric point, so even a
replay cut off before its acknowledgement was written adds no duplicates.)
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Mapping, TextIO

from trainer_runtime.core import envvars
from trainer_runtime.core.command_exits import COMPLETED, PENDING
from trainer_runtime.core.config import load_config
from trainer_runtime.core.errors import ConfigError
from trainer_runtime.core.retry import Deadline
from trainer_runtime.run import outcome
from trainer_runtime.status.reporter import STATUS_FILE
from trainer_runtime.status.storage import TextDir, open_dir
from trainer_runtime.tracking import auth
from trainer_runtime.tracking.runs import build_logger
from trainer_runtime.tracking.shipping import UPLOADED_ACKED, UPLOADED_SPOOL, artifact_name
from trainer_runtime.tracking.spool import ACKED_FILE, SPOOL_FILE, Spool, parse

log = logging.getLogger(__name__)


@dataclass
class Located:
    directory: TextDir
    spool_name: str
    acked_name: str
    status: dict[str, Any] | None


def locate(target: str) -> Located:
    """The spool at ``target``: a status dir with an uploaded spool, or a local spool dir."""
    if target.endswith((".jsonl", ".acked")):
        target = target.rsplit("/", 1)[0]
    directory = open_dir(target)
    status = None
    try:
        status = json.loads(directory.read_text(STATUS_FILE))
    except (FileNotFoundError, OSError, ValueError):
        pass
    for spool_name, acked_name in ((UPLOADED_SPOOL, UPLOADED_ACKED), (SPOOL_FILE, ACKED_FILE)):
        try:
            directory.read_text(spool_name)
            return Located(directory, spool_name, acked_name, status)
        except (FileNotFoundError, OSError):
            continue
    if status and (status.get("tracking") or {}).get("spool_dir"):
        local = status["tracking"]["spool_dir"]
        if os.path.exists(os.path.join(local, SPOOL_FILE)):
            return Located(open_dir(local), SPOOL_FILE, ACKED_FILE, status)
    raise FileNotFoundError(f"no spool at {directory.describe()} (looked for {UPLOADED_SPOOL} and "
                            f"{SPOOL_FILE}); a run whose tracking was ok has nothing to replay")


def replay(target: str, env: Mapping[str, str], out: TextIO, timeout: float = 300.0) -> int:
    """Send what is pending; 0 when everything (and the run's end) is on the server, 1 when not."""
    found = locate(target)
    spool_text = found.directory.read_text(found.spool_name)
    try:
        acked_text = found.directory.read_text(found.acked_name)
    except (FileNotFoundError, OSError):
        acked_text = ""
    content = parse(spool_text, acked_text)
    if content.header is None:
        raise ConfigError(f"{found.directory.describe()}/{found.spool_name} has no header line",
                          hint="point replay at the status dir or the spool dir the status names")
    run_id = content.header["run_id"]
    pending = content.pending()
    closed = any(r["k"] == "end" for r in content.records)
    if not pending and closed:
        print(f"nothing to replay: every record of run {run_id} is on the server "
              f"(acknowledged through #{content.acked})", file=out)
        return COMPLETED
    config = load_config({**env, envvars.MLFLOW_TRACKING_URI: env.get(envvars.MLFLOW_TRACKING_URI)
                          or content.header["tracking_uri"]})
    _activate_auth(config, env)
    try:
        with tempfile.TemporaryDirectory(prefix="trainer-runtime-replay-") as work:
            with open(os.path.join(work, SPOOL_FILE), "w", encoding="utf-8") as fh:
                fh.write(spool_text if spool_text.endswith("\n") else spool_text + "\n")
            with open(os.path.join(work, ACKED_FILE), "w", encoding="utf-8") as fh:
                fh.write(f"{content.acked}\n")
            spool = Spool(work, content.header)
            _fetch_artifacts(found, pending, work)
            end = None if closed else _end_status(found.status)
            logger = build_logger(config, run_id, spool).start()
            report = logger.close(Deadline(timeout), end_status=end)
            spool.close()
            found.directory.write_file(found.acked_name, os.path.join(work, ACKED_FILE))
    finally:
        auth.activate(None)
    points = sum(1 for r in pending if r["k"] != "end")
    sent = report.counts["sent"]
    _update_status(found, report, sent)
    if report.pending == 0 and report.run_closed:
        print(f"replayed {sent} of {points} pending points to run {run_id} on "
              f"{content.header['tracking_uri']}; the run is closed", file=out)
        return COMPLETED
    print(f"replay incomplete: {report.pending} points{'' if report.run_closed else ' and the run end'} "
          f"still pending after {timeout:.0f}s (is the server up?); run it again", file=out)
    return PENDING


def _fetch_artifacts(found: Located, pending: list[dict[str, Any]], work: str) -> None:
    """The files of pending artifact records, into ``work`` where the replaying logger looks for
    them: beside the status they are ``mlflow_spool_artifact.<id>``, in a spool dir ``artifacts/<id>``."""
    for record in pending:
        if record["k"] != "a":
            continue
        target = os.path.join(work, record["file"])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        name = artifact_name(record["file"]) if found.spool_name == UPLOADED_SPOOL else record["file"]
        try:
            found.directory.download(name, target)
        except (FileNotFoundError, OSError) as exc:
            log.error("artifact %s of the spool is missing (%s); it is counted as not logged",
                      record.get("name"), exc)


def _end_status(status: dict[str, Any] | None) -> str:
    """The MLflow status a run gets when its spool holds no end: its status's terminal stage, else
    killed (the trainer died without a close)."""
    stage = (status or {}).get("stage")
    if stage not in outcome.MLFLOW_STATUS:
        log.warning("the spool holds no end and the status says %r: the trainer died without closing; "
                    "the run is marked %s", stage, outcome.mlflow_status("killed"))
        stage = "killed"
    return outcome.mlflow_status(stage)


def _activate_auth(config: Any, env: Mapping[str, str]) -> None:
    mode, why = auth.resolve_mode(config)
    log.info("replaying to %s (auth: %s, because %s)", config.tracking_uri, mode, why)
    source = None
    if mode == "google":
        source = auth.GoogleIdTokenSource(auth.default_audience(config), env)
        source.token()
    auth.activate(source)


def _update_status(found: Located, report: Any, sent: int) -> None:
    status = found.status
    if not status or found.spool_name != UPLOADED_SPOOL:
        return
    tracking = dict(status.get("tracking") or {})
    tracking.update(state="replayed" if report.pending == 0 and report.run_closed else "degraded",
                    pending=report.pending, run_closed=report.run_closed)
    status["tracking"] = tracking
    logging_counts = status.get("logging")
    if isinstance(logging_counts, dict):
        logging_counts["sent"] = logging_counts.get("sent", 0) + sent
        logging_counts["pending"] = report.pending
    try:
        found.directory.write_text(STATUS_FILE, json.dumps(status, indent=2) + "\n")
    except Exception as exc:  # the replay itself worked; say so and go on
        log.error("replayed, but could not update %s: %s", STATUS_FILE, exc)
