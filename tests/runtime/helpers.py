"""Small helpers shared by the runtime tests."""
from __future__ import annotations

import json
import time
from pathlib import Path

from trainer_runtime.run.deps import Deps


class FakeClock:
    """A monotonic clock whose sleep advances it: retry tests never really wait."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def deps(env: dict, **overrides) -> Deps:
    return Deps(env=env, **overrides)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def timed(fn, *args, **kwargs):
    started = time.monotonic()
    try:
        return fn(*args, **kwargs), None, time.monotonic() - started
    except BaseException as exc:  # noqa: BLE001 - tests inspect whatever was raised
        return None, exc, time.monotonic() - started


def new_logger(client, run_id: str, spool_dir=None, **kwargs):
    """A started MetricsLogger for ``run_id`` on ``client.tracking_uri``, spooling to a temp dir."""
    import tempfile

    from trainer_runtime.tracking.logger import MetricsLogger
    from trainer_runtime.tracking.rest import MlflowRest
    from trainer_runtime.tracking.spool import Spool

    spool = Spool(spool_dir or tempfile.mkdtemp(prefix="spool-"), {"run_id": run_id})
    return MetricsLogger(MlflowRest(client.tracking_uri), run_id, spool, **kwargs).start()
