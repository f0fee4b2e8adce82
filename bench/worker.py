"""One bench process: ``python -m bench.worker TASK.json`` runs a task and writes its results.

Tasks (built by the parent, see spawn.py):

- ``overhead``: one set, every configuration once, in the task's (random) order,
  after a discarded warm-up fit per family.
- ``sink``: the same, against the null sink (``bench/sink_server.py``), which counts the points.
- ``outage``: configurations fitted while the parent kills, restarts, stops or
  resumes the server; the worker tells it when epoch 2 ends and waits until the
  server is back before the next fit.
- ``startup``: a Trainer-like run from a fresh interpreter (the runtime's share
  of its wall time), preflights against the warm server, and a run started while
  a cold server is still coming up.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from .configs import BY_NAME
from .workload import Workload


class Channel:
    """JSON lines to the parent (events) and from it (replies), over inherited pipe fds."""

    def __init__(self, event_fd: int | None, reply_fd: int | None) -> None:
        self._out = os.fdopen(event_fd, "w", buffering=1) if event_fd is not None else None
        self._in = os.fdopen(reply_fd, "r") if reply_fd is not None else None

    def send(self, **event: Any) -> None:
        if self._out is not None:
            self._out.write(json.dumps(event) + "\n")

    def wait(self) -> dict:
        line = self._in.readline() if self._in is not None else ""
        if not line:
            raise RuntimeError("the bench parent closed the channel")
        return json.loads(line)


def _measure(config_name: str, workload: Workload, data, task: dict, probes, workdir: Path,
             extra_callbacks: tuple = ()) -> dict:
    from .drivers import run_config

    config = BY_NAME[config_name]
    load = os.getloadavg()[0]
    result = run_config(config, workload, data, task["uri"], probes, workdir, extra_callbacks)
    result["load1_before"] = load
    return result


def _finish_points(result: dict, config_name: str, workload: Workload, uri: str, sink: bool = False) -> None:
    from .drivers import count_points, count_sink_points

    result.update((count_sink_points if sink else count_points)(uri, result.get("run_id")))
    per_log = result.get("metrics_per_log") or 8
    result["points_expected"] = BY_NAME[config_name].expected_points(workload, per_log)


def _warm_up(families: set[str], task: dict, probes, workdir: Path) -> None:
    """Once-per-process costs (TF's autograph, importing mlflow and the runtime, first
    connections) paid on a 3-step fit per family, discarded."""
    from .drivers import run_config
    from .workload import dataset, warm_up

    tiny = Workload(rows=3 * task["workload"]["batch"], batch=task["workload"]["batch"], epochs=1)
    data = dataset(tiny)
    warm_up(data)
    for name in sorted({next(c for c in BY_NAME.values() if c.family == f).name for f in families}):
        run_config(BY_NAME[name], tiny, data, task["uri"], probes, workdir)


def overhead(task: dict, workdir: Path) -> dict:
    from .drivers import install_probes
    from .workload import dataset

    workload = Workload(**{k: task["workload"][k] for k in ("rows", "batch", "epochs")})
    probes = install_probes(task.get("server_pid"))
    _warm_up({BY_NAME[n].family for n in task["order"]}, task, probes, workdir)
    data = dataset(workload)
    fits = []
    for name in task["order"]:
        result = _measure(name, workload, data, task, probes, workdir)
        _finish_points(result, name, workload, task["uri"], sink=task["kind"] == "sink")
        fits.append(result)
    return {"fits": fits}


def outage(task: dict, workdir: Path, channel: Channel) -> dict:
    import tf_keras

    from .drivers import install_probes, run_config
    from .probes import timeline_callback
    from .workload import dataset

    base = Workload(**{k: task["workload"][k] for k in ("rows", "batch", "epochs")})
    probes = install_probes(None)
    _warm_up({BY_NAME[p["config"]].family for p in task["plan"]}, task, probes, workdir)
    data = dataset(base)
    # How long an epoch takes once the fit runs (the first includes tracing), so that the
    # fits below are still training when the server is back.
    epoch_ends: list[float] = []
    calibration = timeline_callback(tf_keras.callbacks.Callback, lambda epoch: epoch_ends.append(time.perf_counter()))
    run_config(BY_NAME["none"], base.with_epochs(3), data, task["uri"], probes, workdir, (calibration,))
    epoch_s = min(b - a for a, b in zip(epoch_ends, epoch_ends[1:]))
    fits = []
    for item in task["plan"]:
        # Long enough that training is still running when the server is back.
        epochs = 2 + int((item["delay"] + item["allowance"]) / max(epoch_s, 0.05)) + 1
        workload = base.with_epochs(epochs)
        fired = []

        def on_epoch_end(epoch: int, item=item, fired=fired) -> None:
            if epoch == 1 and not fired:  # epoch 2 just ended
                fired.append(time.time())
                channel.send(event="fault", id=item["id"], scenario=item["scenario"], delay=item["delay"])

        timeline = timeline_callback(tf_keras.callbacks.Callback, on_epoch_end)
        result = _measure(item["config"], workload, data, task, probes, workdir, (timeline,))
        result.update(timeline.stalls())
        result.update(id=item["id"], scenario=item["scenario"], delay=item["delay"], epochs=epochs,
                      fault_at_wall=fired[0] if fired else None, calibration_epoch_s=epoch_s)
        channel.send(event="done", id=item["id"])
        channel.wait()  # the parent answers once the server is healthy again
        _finish_points(result, item["config"], workload, task["uri"])
        fits.append(result)
    return {"fits": fits}


def startup(task: dict, workdir: Path, channel: Channel) -> dict:
    from .startup import startup_in_worker

    return startup_in_worker(task, workdir, channel)


def main(argv: list[str]) -> int:
    task = json.loads(Path(argv[0]).read_text())
    if task.get("runtime_path"):  # bench a snapshot of the runtime instead of the working tree
        sys.path.insert(0, task["runtime_path"])
    workdir = Path(task["workdir"])
    channel = Channel(task.get("event_fd"), task.get("reply_fd"))
    started = time.time()
    kind = task["kind"]
    if kind in ("overhead", "sink"):  # the same sets; against the null sink, the sink counts the points
        result = overhead(task, workdir)
    elif kind == "outage":
        result = outage(task, workdir, channel)
    elif kind == "startup":
        result = startup(task, workdir, channel)
    else:
        raise SystemExit(f"unknown task kind {kind!r}")
    result.update(kind=kind, started_wall=started, ended_wall=time.time(), pid=os.getpid())
    import trainer_runtime

    result["runtime_file"] = trainer_runtime.__file__
    Path(task["out"]).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
