"""Draw docs/performance.png: hook time per step and end-of-run time per configuration (log scales).

Run by `python -m bench.report` with the tools venv's Python, which has
matplotlib (requirements-tools.lock); usage: python -m bench.plot RESULTS OUT SOURCE_ID.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import summary
from .configs import CONFIGS

MARKERS = {"kill": "v", "stop": "s"}


def draw(results: dict, out: Path, source: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summary.summarize(results)
    steps = results["workload"]["steps"]
    rows = [c for c in CONFIGS if c.family != "none" and s["overhead"].get(c.name, {}).get("n")]
    labels = [s["overhead"][c.name]["label"] for c in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 0.45 * len(rows) + 1.8), sharey=True)
    ys = range(len(rows))

    hook = [1e3 * s["overhead"][c.name]["hook_ms_per_fit"]["median"] / steps
            if s["overhead"][c.name]["hook_ms_per_fit"] else None for c in rows]
    left.barh(list(ys), [max(h or 0, 1e-2) for h in hook], color=[_color(c.family) for c in rows])
    for y, h in zip(ys, hook):
        if h is not None:
            left.text(max(h, 1e-2) * 1.15, y, f"{h:,.1f}", va="center", fontsize=8)
    left.set_xscale("log")
    left.set_xlabel("training-thread hook time per step, µs (all hooks ÷ steps; log)")
    left.set_yticks(list(ys), labels, fontsize=9)
    left.invert_yaxis()

    tracked = [(y, c) for y, c in zip(ys, rows) if c.family not in ("ideal",)]
    ends = [(y, s["overhead"][c.name]["end_of_run_s"]["median"]) for y, c in tracked
            if s["overhead"][c.name]["end_of_run_s"]]
    right.barh([y for y, _ in ends], [max(e, 1e-3) for _, e in ends],
               color=[_color(rows[y].family) for y, _ in ends], label="healthy (median)")
    for y, e in ends:
        right.text(max(e, 1e-3) * 1.15, y, f"{e:.2f} s", va="center", fontsize=8)
    seen = set()
    for r in s["outage"]:
        y = next((i for i, c in enumerate(rows) if c.name == r["config"]), None)
        if y is None or r["end_of_run_s"] is None:
            continue
        key = f"after {r['scenario']} {r['delay']:g} s"
        right.scatter([max(r["end_of_run_s"], 1e-3)], [y], marker=MARKERS.get(r["scenario"], "o"),
                      s=30, zorder=3, color="black" if r["delay"] >= 30 else "dimgray",
                      label=key if key not in seen else None)
        seen.add(key)
    right.set_xscale("log")
    right.set_xlabel("end of run, s (log)")
    right.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"trainer-runtime bench ({results['mode']}, {results['started_at'][:10]}, "
                 f"{steps} steps per fit)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110, metadata={"Source": source})


def _color(family: str) -> str:
    return {"ideal": "#9e9e9e", "mlflow": "#e6842a", "runtime": "#1f77b4", "sync": "#c0392b"}.get(family, "#555")


if __name__ == "__main__":
    draw(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]), sys.argv[3])
