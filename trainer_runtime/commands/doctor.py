"""`trainer-runtime doctor`: every preflight check, without training, one ✓/✗ line each.

Replaces the hand-run connectivity scripts. Nothing is created on the server:
the experiment is only looked up (a missing one is reported as "will be created").
"""
from __future__ import annotations

import json
import time
from urllib.parse import quote
from dataclasses import dataclass
from typing import Callable, TextIO

from trainer_runtime.core.config import FIELDS, RuntimeConfig
from trainer_runtime.core.errors import ConfigError, RuntimeFailure
from trainer_runtime.core.redact import redact
from trainer_runtime.run.chief import DEFAULT_EXPERIMENT, server_checker
from trainer_runtime.run.deps import Deps, default_status_dir
from trainer_runtime.tracking import auth

OK, FAIL, SKIP = "✓", "✗", "-"


@dataclass
class Check:
    name: str
    mark: str
    detail: str
    fix: str = ""


class Doctor:
    def __init__(self, out: TextIO, deps: Deps) -> None:
        self.out = out
        self.deps = deps
        self.checks: list[Check] = []
        self.first_error: RuntimeFailure | None = None

    def report(self, check: Check) -> None:
        self.checks.append(check)
        line = f"{check.mark} {check.name}: {redact(check.detail)}"
        if check.fix:
            line += f"\n    fix: {redact(check.fix)}"
        print(line, file=self.out, flush=True)

    def run(self, name: str, fn: Callable[[], str]) -> bool:
        started = time.monotonic()
        try:
            detail = fn()
        except RuntimeFailure as exc:
            self.first_error = self.first_error or exc
            self.report(Check(name, FAIL, exc.message, exc.hint))
            return False
        self.report(Check(name, OK, f"{detail} ({time.monotonic() - started:.2f}s)"))
        return True

    def skip(self, name: str, why: str) -> None:
        self.report(Check(name, SKIP, f"skipped: {why}"))

    @property
    def exit_code(self) -> int:
        return self.first_error.exit_code if self.first_error else 0


def describe_config(config: RuntimeConfig) -> str:
    parts = []
    for f in FIELDS:
        value = getattr(config, f.name)
        if value is not None and config.sources.get(f.name) != "default":
            parts.append(f"{f.name}={value} [{config.sources.get(f.name)}]")
    if config.mlflow_credentials:
        parts.append(f"MLflow {config.mlflow_credentials} credentials: set")
    return "; ".join(parts) or "defaults only"


def run_doctor(load_config: Callable[[], RuntimeConfig], out: TextIO, deps: Deps | None = None) -> int:
    """Run the checks, print them, return the exit code of the first failure (0 if none)."""
    doc = Doctor(out, deps or Deps())
    try:
        config = load_config()
    except ConfigError as exc:
        doc.first_error = exc
        doc.report(Check("config", FAIL, exc.message, exc.hint))
        return doc.exit_code
    doc.report(Check("config", OK, describe_config(config)))

    mode, why = auth.resolve_mode(config)
    doc.report(Check("auth mode", OK, f"{mode} ({why})"))
    source = None
    if mode == "google":
        source = doc.deps.token_source_factory(auth.default_audience(config), doc.deps.env)
        if doc.run("ID token", lambda: _token(source)):
            doc.report(Check("identity", OK, f"{source.identity() or 'unknown'} via {source.source.kind} "
                                             f"({source.source.detail})"))
        else:
            doc.skip("identity", "no token")
            _skip(doc, SERVER_CHECKS, "no credential")
            source = None
    if mode != "google" or source is not None:
        auth.activate(source)
        try:
            _server_checks(doc, config, mode, source)
        finally:
            auth.activate(None)
    destination = config.status_dir or default_status_dir(doc.deps.env)
    doc.run("status destination", lambda: _writable(doc.deps, destination))
    failed = sum(c.mark == FAIL for c in doc.checks)
    print(f"{'all checks passed' if not failed else f'{failed} check(s) failed'}", file=out)
    return doc.exit_code


def _token(source: auth.GoogleIdTokenSource) -> str:
    source.token()
    return f"ID token for audience {source.audience}"


SERVER_CHECKS = ("health", "API call", "server version", "experiment")


def _skip(doc: Doctor, checks: tuple[str, ...], why: str) -> None:
    for check in checks:
        doc.skip(check, why)


def _server_checks(doc: Doctor, config: RuntimeConfig, mode: str, source) -> None:
    checker = server_checker(config, doc.deps, mode, source, source.identity if source else (lambda: None))
    name = config.experiment_name or DEFAULT_EXPERIMENT
    if not doc.run("health", lambda: f"{config.tracking_uri}/health answered 200"
                   if checker.get("/health", "health check") else ""):
        _skip(doc, SERVER_CHECKS[1:], "server not healthy")
        return
    found: dict = {}

    def api() -> str:
        reply = checker.get(f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={quote(name)}",
                            "API check")
        if reply.status == 200:
            found.update(json.loads(reply.body).get("experiment", {}))
        return "MLflow REST API answered (Host header accepted)"

    if not doc.run("API call", api):
        _skip(doc, SERVER_CHECKS[2:], "API not reachable")
        return
    reply = checker.probe("/version", config.request_timeout)
    doc.report(Check("server version", OK, reply.body.strip() if reply.status == 200 else "unknown"))
    if found:
        stage = found.get("lifecycle_stage", "active")
        mark = OK if stage == "active" else FAIL
        doc.report(Check("experiment", mark, f"{name!r} exists (id {found.get('experiment_id')}, {stage})",
                         "" if mark == OK else "restore it or choose another name"))
        if mark == FAIL:
            doc.first_error = doc.first_error or ConfigError(f"experiment {name!r} is deleted")
    else:
        doc.report(Check("experiment", OK, f"{name!r} does not exist yet; the first run creates it"))


def _writable(deps: Deps, destination: str) -> str:
    where = deps.open_dir(destination).write_text(".trainer_runtime_doctor", '{"doctor": "ok"}\n')
    return f"wrote {where}"
