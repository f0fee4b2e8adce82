"""RSS growth per million points pending during an outage: the spool's RAM window against none.

    python -m bench.memory [--points 1000000]

Each configuration runs in its own process (a fresh heap): a MetricsLogger whose server refuses every
connection (a closed loopback port), fed ``--points`` every-step points, RSS sampled before and once all
of them are spooled and pending. ``window 64 MB`` is the default; ``no window`` keeps every pending record
in RAM (what the logger did before the window: ``memory_window`` above the point count). Printed as one
JSON object per configuration, side by side in one run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _child(points: int, window_mb: float | None) -> dict:
    import socket

    from trainer_runtime.metrics_logger import MetricsLogger, window_records
    from trainer_runtime.rest import MlflowRest
    from trainer_runtime.retry import Deadline
    from trainer_runtime.spool import Spool

    with socket.socket() as sock:  # a port nobody listens on: every send is refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    window = window_records(window_mb) if window_mb else points * 2
    spool = Spool(tempfile.mkdtemp(prefix="bench-memory-"), {"run_id": "bench"})
    logger = MetricsLogger(MlflowRest(f"http://127.0.0.1:{port}", timeout=0.5), "bench", spool,
                           max_queue=points + 10, memory_window=window).start()
    before = _rss_mb()
    started = time.monotonic()
    for step in range(points):
        logger.log_metrics({"loss": step * 1e-6}, step)
        if step % 1000 == 999:  # a training's pace: the writer drains the queue as it fills
            while logger.progress()["points_pending"] > logger.counts.pending:
                time.sleep(0.001)
    while logger.counts.pending < points and time.monotonic() - started < 600:
        time.sleep(0.2)
    after = _rss_mb()
    logger.close(Deadline(1.0))
    return {"config": f"window {window_mb:g} MB" if window_mb else "no window", "points": points,
            "pending": logger.counts.pending, "rss_before_mb": round(before, 1), "rss_after_mb": round(after, 1),
            "growth_mb_per_million": round((after - before) * 1_000_000 / points, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(_child(args.points, float(args.child) or None)))
        return 0
    for window in ("64", "0"):
        out = subprocess.run([sys.executable, "-m", "bench.memory", "--points", str(args.points), "--child", window],
                             capture_output=True, text=True, timeout=1200, env=dict(os.environ))
        print(out.stdout.strip().splitlines()[-1] if out.returncode == 0 else out.stderr[-2000:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
