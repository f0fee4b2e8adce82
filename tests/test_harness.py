"""The harness itself: a server that cannot start fails loudly, with its log."""
from __future__ import annotations

import sys

import pytest

from tests.harness.procs import FixtureStartError, ManagedProcess, free_port


def test_a_server_that_exits_early_is_a_loud_error(tmp_path):
    proc = ManagedProcess("broken", [sys.executable, "-c", "import sys; print('bad flag --x'); sys.exit(3)"],
                          tmp_path / "broken.log")
    with pytest.raises(FixtureStartError, match="broken exited with 3 before it was ready") as info:
        proc.start(f"http://127.0.0.1:{free_port()}/health", timeout=30)
    assert "bad flag --x" in str(info.value)


def test_a_server_that_never_answers_times_out_and_is_stopped(tmp_path):
    proc = ManagedProcess("silent", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "s.log")
    with pytest.raises(FixtureStartError, match="not ready"):
        proc.start(f"http://127.0.0.1:{free_port()}/health", timeout=1.5)
    assert proc.proc.poll() is not None, "stopped by PID after the timeout"
