"""Start a bench worker process, answer its events, collect its results."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent


class WorkerError(RuntimeError):
    """A worker process failed; the message carries its log tail."""


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_USE_LEGACY_KERAS", "1")  # what TFRS needs and the image sets
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def run_worker(task: dict[str, Any], workdir: Path, name: str,
               on_event: Callable[[dict], dict | None] | None = None, timeout: float = 3600) -> dict[str, Any]:
    """Run ``python -m bench.worker`` on ``task`` in a fresh interpreter and return its results.

    ``on_event`` is called (on a reader thread, in order) for every event the
    worker sends; what it returns, if not None, is sent back as the reply.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    event_r, event_w = os.pipe()
    reply_r, reply_w = os.pipe()
    out, log_path, task_path = workdir / f"{name}.out.json", workdir / f"{name}.log", workdir / f"{name}.task.json"
    task = {**task, "event_fd": event_w, "reply_fd": reply_r, "out": str(out), "workdir": str(workdir)}
    task_path.write_text(json.dumps(task, indent=1))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bench.worker", str(task_path)], cwd=REPO,
                                pass_fds=(event_w, reply_r), stdout=log, stderr=subprocess.STDOUT,
                                env=worker_env())
    os.close(event_w)
    os.close(reply_r)
    failures: list[BaseException] = []

    def serve() -> None:
        replies = os.fdopen(reply_w, "w", buffering=1)
        try:
            with os.fdopen(event_r) as events:
                for line in events:
                    reply = on_event(json.loads(line)) if on_event else None
                    if reply is not None:
                        replies.write(json.dumps(reply) + "\n")
        except BaseException as exc:  # reported after the worker ends
            failures.append(exc)
            proc.kill()
        finally:
            try:
                replies.close()
            except OSError:
                pass

    reader = threading.Thread(target=serve, name=f"bench-events-{name}", daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = "timeout"
    reader.join(timeout=30)
    if failures:
        raise WorkerError(f"{name}: handling its events failed: {failures[0]!r}") from failures[0]
    if code != 0 or not out.exists():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
        raise WorkerError(f"{name} exited with {code}; log {log_path}:\n{tail}")
    return json.loads(out.read_text())
