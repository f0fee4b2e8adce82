"""The end of a run: record the outcome, then close the MLflow run inside one budget.

Order matters, because a preempted task may be killed at any moment: the
terminal status goes first (the outcome and the counts so far), then the
logger sends what is pending and the run's end, then the status is written
again with ``tracking.state`` ``ok``, or ``degraded`` with the spool uploaded
beside the status and the command that replays it.
"""
from __future__ import annotations

import logging
from typing import Any

from trainer_runtime.run import outcome, signals
from trainer_runtime.run.heartbeat import Heartbeat
from trainer_runtime.status.reporter import StatusReporter
from trainer_runtime.tracking.runs import TrackingContext
from trainer_runtime.tracking.shipping import ship_unacked

log = logging.getLogger(__name__)

#: seconds the first terminal write may retry: the close still has work to do after it.
FIRST_WRITE = 5.0

#: seconds of the close budget kept back for the spool upload and the final status write.
RESERVE = 3.0


def close_run(ctx: TrackingContext | None, reporter: StatusReporter | None, decided: outcome.Outcome,
           budget: signals.CloseBudget, beat: Heartbeat | None) -> None:
    """Record the outcome first, then close the MLflow run within ``budget`` (in the order the
    module's docstring gives). Never raises."""
    if beat is not None:
        beat.stop()
    if ctx is not None and ctx.shipper is not None:
        ctx.shipper.stop()
    if ctx is not None and ctx.system_metrics is not None:  # its samples go through the logger: stop it first
        ctx.extra_status["system_metrics"] = ctx.system_metrics.stop(min(1.0, budget.remaining() / 10))
    fields: dict[str, Any] = {"exit_code": decided.exit_code}
    if ctx is not None:
        ctx.start_logger()  # a run that ended before training started: its end goes through the logger too
        fields.update(ctx.extra_status)
        fields["logging"] = ctx.logger.counts.as_dict()
        fields["tracking"] = {"state": "closing", "spool_dir": ctx.logger.spool.directory}
    if reporter is not None:
        reporter.finish(decided.stage, decided.error, deadline=min(FIRST_WRITE, budget.remaining()), **fields)
    if ctx is None:
        if reporter is not None:
            log.info("status %s: %s", decided.stage, reporter.status_path)
        return
    reserve = min(RESERVE, budget.remaining() * 0.2)
    try:
        report = ctx.logger.close(budget.reserve(reserve), end_status=decided.mlflow_status)
        fields["logging"] = report.as_dict()
        fields["tracking"] = _tracking_state(ctx, reporter, report, budget)
    except Exception as exc:  # the run's own outcome wins; this is reported beside it
        log.exception("could not close MLflow run %s as %s", ctx.run_id, decided.mlflow_status)
        fields["logging"] = ctx.logger.counts.as_dict()
        fields["tracking"] = {"state": "degraded", "error": str(exc), "spool_dir": ctx.logger.spool.directory}
    fields.update(ctx.extra_status)
    fields["tracking"]["close_seconds"] = round(budget.elapsed(), 3)
    if reporter is not None:
        reporter.finish(decided.stage, decided.error, deadline=max(1.0, budget.remaining()), **fields)
        if ctx.extra_info:
            reporter.write_info(ctx.info(), deadline=max(1.0, budget.remaining()))
    tracking = fields["tracking"]
    if tracking["state"] == "ok":
        log.info("run %s %s in %.2fs (%s points sent); status %s: %s", ctx.run_id, decided.mlflow_status,
                 budget.elapsed(), fields["logging"]["sent"], decided.stage,
                 reporter.status_path if reporter else "-")
    else:
        log.error("tracking degraded: %s points and the run's end (%s) not on the server; spool: %s; "
                  "replay with: %s", tracking.get("pending"), decided.mlflow_status,
                  tracking.get("spool_uri"), tracking.get("replay_command"))


def _tracking_state(ctx: TrackingContext, reporter: StatusReporter | None, report: Any,
                    budget: signals.CloseBudget) -> dict[str, Any]:
    if report.run_closed and report.pending == 0:
        return {"state": "ok"}
    spool = ctx.logger.spool
    state: dict[str, Any] = {"state": "degraded", "pending": report.pending, "run_closed": report.run_closed,
                             "spool_dir": spool.directory, "spool_uri": spool.path}
    if reporter is not None:
        try:
            spool.sync()
            state["spool_uri"] = ship_unacked(spool.directory, ctx.logger.artifact_dir, reporter.directory,
                                              deadline=budget.remaining() / 2)["spool_uri"]
            target = reporter.directory.describe()
        except Exception as exc:  # the local spool is still there; say so
            log.error("could not upload the spool beside the status: %s", exc)
            target = spool.directory
    else:
        target = spool.directory
    state["replay_command"] = f"trainer-runtime replay {target}"
    return state
