"""`python -m bench.report`: docs/performance.md and its plot, generated from the newest results file.

The newest file is the one in bench/results/ with the latest ``started_at``.
``--check`` only says whether the docs are current (exit 1 if not). The plot
is drawn by bench/plot.py with the tools venv's matplotlib (in
requirements-tools.lock; the runtime venv has none) and carries the source
file's id in its PNG metadata, so a stale plot is detectable without drawing.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

from . import summary as summarize_mod
from .markdown import num, render

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
SINK_RESULTS = RESULTS / "sink"
DOC = REPO / "docs" / "performance.md"
PLOT = REPO / "docs" / "performance.png"
PLOT_KEY = "Source"


def newest_results(folder: Path = RESULTS) -> Path:
    files = sorted(folder.glob("*.json"))
    if not files:
        raise FileNotFoundError(f"no results in {folder}: run `make bench` (or `make bench QUICK=1`)")
    return max(files, key=lambda p: (json.loads(p.read_text()).get("started_at", ""), p.name))


def newest_sink_results(main: Path) -> Path | None:
    """The run the sink section comes from: a `make bench-sink` run in bench/results/sink newer than the
    full run ``main`` (None: ``main``'s own sink section, or none)."""
    started = json.loads(main.read_text()).get("started_at", "")
    runs = [(json.loads(p.read_text()).get("started_at", ""), p.name, p) for p in SINK_RESULTS.glob("*.json")]
    newest = max(runs, default=None)
    if newest is None or (newest[0] <= started and "sink" in json.loads(main.read_text())):
        return None
    return newest[2]


def _render(path: Path) -> str:
    sink = newest_sink_results(path)
    return render(json.loads(path.read_text()), source_id(path),
                  json.loads(sink.read_text()) if sink else None, source_id(sink) if sink else None)


def source_id(path: Path) -> str:
    return f"{path.name} sha256:{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"


def png_text(path: Path) -> dict[str, str]:
    """The tEXt chunks of a PNG file."""
    data = path.read_bytes()
    found, offset = {}, 8
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        body = data[offset + 8:offset + 8 + length]
        if kind == b"tEXt":
            key, _, value = body.partition(b"\0")
            found[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\0")
            found[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
        offset += 12 + length
    return found


# --- generation --------------------------------------------------------------------

def plot(results_path: Path, out: Path = PLOT) -> str:
    tools = os.environ.get("TR_TOOLS_VENV")
    python = Path(tools or "", "bin", "python")
    if not tools or not python.exists():
        return "plot not drawn: TR_TOOLS_VENV (the tools venv with matplotlib) is not set; use `make bench-docs`"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(python), "-m", "bench.plot", str(results_path), str(out),
                           source_id(results_path)], cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"bench.plot failed:\n{proc.stderr[-2000:]}")
    return f"wrote {out.relative_to(REPO)}"


def generate(results_path: Path | None = None) -> str:
    path = results_path or newest_results()
    DOC.write_text(_render(path))
    sink = newest_sink_results(path)
    return (f"wrote {DOC.relative_to(REPO)} from {path.relative_to(REPO)}"
            + (f" and {sink.relative_to(REPO)}" if sink else "") + f"; {plot(path)}")


def stale(results_path: Path | None = None) -> list[str]:
    """Why the generated docs do not match the newest results (empty when they do)."""
    path = results_path or newest_results()
    problems = []
    if not DOC.exists() or DOC.read_text() != _render(path):
        sink = newest_sink_results(path)
        problems.append(f"{DOC.relative_to(REPO)} is not what {path.name}"
                        + (f" and sink/{sink.name}" if sink else "") + " render to")
    if not PLOT.exists() or png_text(PLOT).get(PLOT_KEY) != source_id(path):
        problems.append(f"{PLOT.relative_to(REPO)} was not drawn from {source_id(path)}")
    return problems


def console_summary(results: dict[str, Any], path: Path) -> str:
    s = summarize_mod.summarize(results)
    lines = [f"{results['mode']} bench, {results['sets']} sets x {results['workload']['steps']} steps, "
             f"load {results['load_average']['start'][0]} -> {results['load_average']['end'][0]}, "
             f"{results['duration_s'] / 60:.1f} min",
             f"{'configuration':<44}{'fit/none':>9}{'total/none':>11}{'hook us/st':>11}{'end s':>7}"
             f"{'bg us/pt':>9}{'points':>16}"]
    for name, r in s["overhead"].items():
        if not r["n"]:
            continue
        med = lambda d, f="{:.2f}": "-" if not d else f.format(d["median"])  # noqa: E731
        points = "-" if r["points_expected"] is None else f"{r['points_present']}/{r['points_expected']}"
        lines.append(f"{r['label']:<44}{med(r['fit_vs_none']):>9}{med(r['run_total_vs_none']):>11}"
                     f"{med(r['hook_us_per_step'], '{:.1f}'):>11}{med(r['end_of_run_s']):>7}"
                     f"{num(r['background_us_per_point'], '{:.0f}'):>9}{points:>16}")
    for r in s["outage"]:
        lines.append(f"outage {r['scenario']} {r['delay']:g}s {r['config']:<15} stall {num(r['stall_s'])} s, "
                     f"end of run {num(r['end_of_run_s'])} s, lost {r['points_lost']}"
                     + (f" ({r['error']})" if r["error"] else ""))
    st = s["startup"]
    cold = st.get("cold") or {}
    if st.get("import_ms"):
        lines.append(f"startup: import {st['import_ms']['median']:.1f} ms, preflight "
                     f"{num((st.get('preflight_ms') or {}).get('median'), '{:.0f}')} ms, cold healthy -> first "
                     f"step {num(cold.get('healthy_to_first_step_begin_s'))} s, runtime share "
                     f"{num(100 * st['share']['share'] if st.get('share') else None, '{:.1f}')} %")
    image = results.get("image") or {}
    if image:
        lines.append("image: " + (f"+{image['added_bytes'] / 1e6:.0f} MB over the base" if image.get("measured")
                                  else image["why"]))
    for t in s["targets"]:
        mark = {True: "met    ", False: "NOT MET", None: "n/a    "}[t["met"]]
        lines.append(f"  {mark} {t['target']}: {t['value'] or t['note'] or '-'} ({t['threshold']})")
    lines.append(f"results: {path}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, help="results file (default: the newest in bench/results)")
    parser.add_argument("--check", action="store_true", help="exit 1 if the docs are stale; write nothing")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale(args.results)
        for problem in problems:
            print(f"stale: {problem}; run `make bench-docs`", file=sys.stderr)
        return 1 if problems else 0
    print(generate(args.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
