"""The run's logger: built from the config by one factory, started explicitly by the session."""
from __future__ import annotations

import pytest

from trainer_runtime.core.config import load_config
from trainer_runtime.core.retry import Deadline
from trainer_runtime.tracking.logger import MetricsLogger, window_records
from trainer_runtime.tracking.runs import TrackingContext, build_logger
from trainer_runtime.tracking.spool import Spool

URI = "http://127.0.0.1:9"  # nothing is sent: these loggers are given nothing to send


def _settings(logger: MetricsLogger) -> tuple:
    return logger._max_queue, logger._send_timeout, logger._window


def test_the_factory_sizes_and_times_the_logger_from_the_config(tmp_path):
    config = load_config({"MLFLOW_TRACKING_URI": URI, "TRAINER_RUNTIME_QUEUE_SIZE": "50",
                          "TRAINER_RUNTIME_SEND_TIMEOUT": "40", "TRAINER_RUNTIME_REQUEST_TIMEOUT": "5",
                          "TRAINER_RUNTIME_SPOOL_MEMORY_MB": "2"})
    logger = build_logger(config, "run", Spool(str(tmp_path), {"run_id": "run"}))
    max_queue, send_timeout, window = _settings(logger)
    assert max_queue == 50 and window == window_records(2)
    assert send_timeout == 5.0, "one logging request never outlasts request_timeout"


def test_the_logger_defaults_are_the_config_defaults(tmp_path):
    spool = Spool(str(tmp_path), {"run_id": "run"})
    default = MetricsLogger(None, "run", spool)
    assert _settings(default) == _settings(build_logger(load_config({"MLFLOW_TRACKING_URI": URI}), "run", spool))


def _ctx(tmp_path) -> TrackingContext:
    config = load_config({"MLFLOW_TRACKING_URI": URI, "TRAINER_RUNTIME_SPOOL_DIR": str(tmp_path / "spool")})
    return TrackingContext(None, config, "1", "experiment", "run-1", None, "test", "none")


def test_the_logger_is_there_only_once_started(tmp_path):
    ctx = _ctx(tmp_path)
    with pytest.raises(RuntimeError, match=r"start_logger\(\)"):
        ctx.logger  # noqa: B018 - the access is what is tested
    assert not (tmp_path / "spool").exists(), "reading the attribute started nothing"
    assert ctx.progress() == {}


def test_start_logger_starts_one_logger_however_often_it_is_called(tmp_path):
    ctx = _ctx(tmp_path)
    logger = ctx.start_logger()
    try:
        assert ctx.start_logger() is logger and ctx.logger is logger
        assert logger._sender is not None and logger._sender.is_alive()
        assert logger.spool.directory == str(tmp_path / "spool")
    finally:
        logger.close(Deadline(5))
        logger.spool.close()
