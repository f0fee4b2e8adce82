"""Status files a test or a fault row left, checked against the contract's strict schemas.

``check`` parses one file (``check_text``: one about to be written) as strict JSON and validates it
against ``contract.schema(<its document>, strict=True)``, failing with the file and every error;
``labels`` says what a valid file counts as (its stage, its tracking state, stale or not),
for the counts the suites print and assert.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema

from trainer_runtime.status import contract

#: a `training` file whose heartbeat is older than this many intervals is stale (as `trainer-runtime status` says)
STALE_FACTOR = 2
DEFAULT_HEARTBEAT_INTERVAL = 30.0


@functools.lru_cache(maxsize=None)
def validator(document: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(contract.schema(document, strict=True))


def status_files(root: Path) -> list[Path]:
    """Every status, replica status and info file under ``root``."""
    return sorted(p for p in Path(root).rglob("mlflow_*.json") if p.is_file() and contract.document_of(p.name))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"a bare {name}: not strict JSON")


def errors(document: str, content: Any) -> list[str]:
    """Why ``content`` is not a valid ``document`` (strict): one line per error, empty when it is."""
    found = sorted(validator(document).iter_errors(content), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}" for e in found]


def check(path: Path | str) -> dict[str, Any]:
    """The content of the status file at ``path``, which must parse as strict JSON and be valid
    against its document's strict schema.

    Raises:
        AssertionError: naming the file and what is wrong with it.
    """
    return check_text(str(path), Path(path).read_text())


def check_text(where: str, text: str) -> dict[str, Any]:
    """``check`` for the text of a status file about to be written at ``where`` (a path or a name)."""
    document = contract.document_of(where.rsplit("/", 1)[-1])
    assert document is not None, f"{where}: not a status file name"
    try:
        content = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise AssertionError(f"{where}: {exc}") from exc
    wrong = errors(document, content)
    assert not wrong, f"{where} is not a valid {document} (strict schema): " + "; ".join(wrong)
    return content


def labels(name: str, content: dict[str, Any], now: dt.datetime | None = None) -> list[str]:
    """What a valid file counts as: ``info``; ``replica <stage>``; or its stage, ``stale`` for a
    ``training`` status whose heartbeat is old, and ``tracking <state>``."""
    document = contract.document_of(name)
    if document == "mlflow_info":
        return ["info"]
    if document == "mlflow_status.replica":
        return [f"replica {content['stage']}"]
    found = [content["stage"]]
    if content["stage"] == "training" and _stale(content, now or dt.datetime.now(dt.timezone.utc)):
        found.append("stale")
    if content.get("tracking"):
        found.append(f"tracking {content['tracking']['state']}")
    return found


def _stale(content: dict[str, Any], now: dt.datetime) -> bool:
    beat = (content.get("progress") or {}).get("heartbeat_at")
    if beat is None:
        return False
    age = (now - dt.datetime.fromisoformat(beat.replace("Z", "+00:00"))).total_seconds()
    return age > STALE_FACTOR * content.get("heartbeat_interval", DEFAULT_HEARTBEAT_INTERVAL)


def summary(counts: dict[str, int]) -> str:
    """One line: how many files were validated, by label."""
    files = sum(n for label, n in counts.items() if label.split()[0] in (*contract.STAGES, "info", "replica"))
    return f"status files valid against the strict schemas: {files} (" + ", ".join(
        f"{label} {n}" for label, n in sorted(counts.items())) + ")"
