"""The `trainer-runtime` command: `doctor`, `run TARGET`, `status DIR`, `replay DIR`, `--version`.

Parses arguments, sets up logging, and hands over to one
orchestrator (session.run_session, which handles signals); ``run`` leaves through
``exits.exit_with`` with the outcome ``outcome.decide`` chose.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from trainer_runtime import __version__
from trainer_runtime.core.command_exits import COMMAND_EXIT_CODES, NOT_FOUND
from trainer_runtime.core.config import FIELDS, load_config

log = logging.getLogger(__name__)


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration (flags > custom_config > env > defaults)")
    for f in FIELDS:
        group.add_argument(f.flag, dest=f.name, default=None, metavar=f.name.upper(),
                           help=f"{f.doc} [env {f.env}]")


def _exit_codes(command: str) -> str:
    return "exit codes: " + "; ".join(f"{code} {meaning}" for code, meaning
                                      in sorted(COMMAND_EXIT_CODES[command].items()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trainer-runtime",
                                     description="TFX trainer runtime with validated MLflow tracking.")
    parser.add_argument("--version", action="version", version=f"trainer-runtime {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    doctor = sub.add_parser("doctor", help="run every preflight check without training")
    _add_config_flags(doctor)
    status = sub.add_parser("status", help="print a run's status files (and its replicas') for a person, or "
                                           "as JSON; say when it is stale",
                            description=_exit_codes("status"))
    status.add_argument("target", help="the status dir (local or gs://bucket/prefix), or a TFX model_run dir")
    status.add_argument("--json", action="store_true", dest="as_json",
                        help="print the status as one JSON object for machines (trainer_runtime.status.StatusView; "
                             "{\"found\": false, ...} when there is none), with the same exit codes")
    replay = sub.add_parser("replay", help="send what a degraded run left in its spool, and close the run",
                            description=_exit_codes("replay"))
    replay.add_argument("target", help="the status dir (local or gs://bucket/prefix) with mlflow_spool.jsonl, "
                                       "or a local spool dir")
    replay.add_argument("--timeout", type=float, default=300.0, help="seconds to keep trying (default 300)")
    run = sub.add_parser("run", help="run a function (pkg.mod:fn) as a tracked training job")
    run.add_argument("target", help="pkg.module:function, pkg.module.function or file.py:function")
    run.add_argument("args", nargs=argparse.REMAINDER,
                     help="after --: arguments for your function, which sees them in sys.argv[1:]")
    _add_config_flags(run)
    return parser


def _flags(ns: argparse.Namespace) -> dict:
    return {f.name: getattr(ns, f.name, None) for f in FIELDS}


DOCTOR_PREFLIGHT_TIMEOUT = 30.0


def doctor_config(config):
    """Doctor answers within 30 s unless a budget was given; a job's default allows 300 s."""
    from dataclasses import replace

    if config.sources.get("preflight_timeout") != "default":
        return config
    return replace(config, preflight_timeout=DOCTOR_PREFLIGHT_TIMEOUT,
                   sources={**config.sources, "preflight_timeout": "doctor default"})


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    flags = _flags(args)
    from trainer_runtime.core import logs

    logs.setup(flags.get("log_format"), os.environ, root_level=logging.INFO)
    from trainer_runtime.core.redact import register_env_secrets

    register_env_secrets(os.environ)
    if args.command == "replay":
        from trainer_runtime.core.errors import RuntimeFailure
        from trainer_runtime.commands.replay import replay

        try:
            return replay(args.target, os.environ, sys.stdout, timeout=args.timeout)
        except FileNotFoundError as exc:
            print(f"replay: {exc}", file=sys.stderr)
            return NOT_FOUND
        except RuntimeFailure as exc:
            print(f"replay: {exc}", file=sys.stderr)
            return exc.exit_code
    if args.command == "status":
        from trainer_runtime.status.view import show_status

        return show_status(args.target, sys.stdout, as_json=args.as_json)
    if args.command == "doctor":
        from trainer_runtime.commands.doctor import run_doctor

        return run_doctor(lambda: doctor_config(load_config(os.environ, None, flags)), sys.stdout)
    from trainer_runtime.commands.standalone import run_standalone
    from trainer_runtime.run.exits import TEARDOWN, exit_with

    # this process ends with the run: its teardown may not outlast the close by much
    exit_with(run_standalone(args.target, args.args, flags), teardown=TEARDOWN)


if __name__ == "__main__":
    sys.exit(main())
