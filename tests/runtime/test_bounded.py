"""The one bounded-thread helper: its value, its error, or StillRunning once the wait is over."""
from __future__ import annotations

import threading
import time

import pytest

from trainer_runtime.core.bounded import StillRunning, call_within


def test_returns_what_the_work_returned():
    assert call_within(5, lambda: 42) == 42
    assert call_within(5, lambda: None) is None


def test_raises_what_the_work_raised():
    def fail():
        raise KeyError("the server said no")

    with pytest.raises(KeyError, match="the server said no"):
        call_within(5, fail)


def test_stops_waiting_for_work_that_hangs():
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(StillRunning, match="still running after 0.3s"):
        call_within(0.3, lambda: release.wait(30))
    assert time.monotonic() - started < 2.0
    release.set()


def test_settle_transport_marks_only_absent_probed_modules(monkeypatch, tmp_path):
    """MLflow's transport imports `dbruntime` on every request; off Databricks that import is marked
    absent (so it fails before any finder, and MLflow's import-hook lock, is involved); where the
    module exists it is left alone."""
    import sys

    from trainer_runtime.tracking import rest

    monkeypatch.delitem(sys.modules, "dbruntime", raising=False)
    monkeypatch.delitem(sys.modules, "pyspark", raising=False)
    assert rest.settle_transport() == ["dbruntime", "pyspark"]
    assert sys.modules["dbruntime"] is None
    with pytest.raises(ModuleNotFoundError):
        import dbruntime  # noqa: F401
    monkeypatch.delitem(sys.modules, "dbruntime")
    monkeypatch.delitem(sys.modules, "pyspark")
    (tmp_path / "dbruntime").mkdir()
    (tmp_path / "dbruntime" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert rest.settle_transport() == ["pyspark"]
    assert "dbruntime" not in sys.modules
