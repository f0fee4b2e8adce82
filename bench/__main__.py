"""`make bench` (`python -m bench [--quick]`): this runtime beside MLflow's own callback and the baselines.

Writes bench/results/<date>[-quick].json (raw figures, machine facts, load
average), prints a one-screen summary and regenerates docs/performance.md and
its plot from that file (`python -m bench.report` does only the last step).
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from . import image, machine, report, summary
from .configs import CONFIGS
from .spawn import REPO, run_worker
from .workload import FULL, QUICK

SECTIONS = ("image", "startup", "overhead", "outage", "sink")
RESULTS = REPO / "bench" / "results"
#: a run of the sink section alone (`make bench-sink`): its own results, which docs/performance.md
#: reads for that section beside the newest full run
SINK_RESULTS = RESULTS / "sink"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny fits, 2 sets, short outages (a few minutes): for development")
    parser.add_argument("--sets", type=int, help="overhead sets (default 5, quick 2)")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only these sections")
    parser.add_argument("--runtime-ref", help="bench trainer_runtime as committed at this git ref "
                                              "instead of the working tree")
    parser.add_argument("--seed", type=int, help="seed of the random configuration orders")
    parser.add_argument("--out", type=Path, help="results directory (default bench/results; for a run with "
                                                  "--only, its work dir, so a partial run never becomes the "
                                                  "newest results the docs are made from)")
    parser.add_argument("--no-docs", action="store_true", help="do not regenerate docs/performance.md")
    return parser.parse_args(argv)


def _export_runtime(ref: str, workdir: Path) -> str:
    """``trainer_runtime`` as committed at ``ref``, unpacked where the workers put it first on sys.path."""
    target = workdir / "runtime-src"
    target.mkdir()
    archive = subprocess.run(["git", "archive", ref, "trainer_runtime"], cwd=REPO, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return str(target)


def _server_version(uri: str) -> str:
    try:
        with urllib.request.urlopen(f"{uri}/version", timeout=5) as resp:
            return resp.read().decode().strip()
    except OSError:
        return "unknown"


def _healthy_server_sections(results: dict, sections: list[str], workdir: Path, base_task: dict,
                             args: argparse.Namespace, sets: int, sync_sets: int, rng: random.Random) -> None:
    """Start-up and overhead, against one MLflow server that stays up."""
    from tests.harness.servers import start_mlflow

    server, uri = start_mlflow(workdir / "mlflow")
    results["server"] = {"version": _server_version(uri), "start_s": server.started_in}
    try:
        if "startup" in sections:
            from .startup import run_startup

            print("startup: import, a Trainer-like run, preflights, a cold server", flush=True)
            results["startup"] = run_startup(workdir / "startup", base_task, uri, 3 if args.quick else 5)
        if "overhead" in sections:
            results["overhead"] = {"sets": []}
            for number in range(sets):
                # The synchronous client makes each fit take minutes; it runs in the first sets only.
                order = [c.name for c in CONFIGS if c.family != "sync" or number < sync_sets]
                rng.shuffle(order)
                print(f"overhead set {number + 1}/{sets} (load {machine.load_average()[0]}): "
                      f"{' '.join(order)}", flush=True)
                one = run_worker({**base_task, "kind": "overhead", "uri": uri, "server_pid": server.pid,
                                  "order": order}, workdir / f"set{number}", f"set{number}")
                results["overhead"]["sets"].append({"order": order, "fits": one["fits"],
                                                    "load_average_after": machine.load_average()})
    finally:
        server.stop()


def _command(argv: list[str]) -> str:
    """How this run was started, as the make target spells it."""
    rest = [a for a in argv if a != "--quick"]
    return ("make bench" + (" QUICK=1" if "--quick" in argv else "")
            + (f" BENCH_ARGS='{' '.join(rest)}'" if rest else ""))


def main(argv: list[str] | None = None) -> int:
    from tests.harness.servers import tools_venv

    args = parse_args(argv)
    try:
        tools_venv()
    except RuntimeError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    sections = args.only or list(SECTIONS)
    workload = QUICK if args.quick else FULL
    sets = args.sets or (2 if args.quick else 5)
    sync_sets = 1 if args.quick else 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    rng = random.Random(seed)
    workdir = Path(tempfile.mkdtemp(prefix="tr-bench-"))
    started = time.time()
    results = {"schema": 1, "mode": "quick" if args.quick else "full",
               "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
               "command": _command(argv if argv is not None else sys.argv[1:]), "sections": sections,
               "seed": seed, "workload": workload.as_dict(), "sets": sets, "sync_sets": min(sync_sets, sets),
               "machine": machine.facts(), "code": machine.code_under_test(args.runtime_ref),
               "load_average": {"start": machine.load_average()}}
    base_task = {"workload": workload.as_dict(),
                 "runtime_path": _export_runtime(args.runtime_ref, workdir) if args.runtime_ref else None}
    print(f"bench ({results['mode']}): {workload.steps_per_epoch} steps/epoch x {workload.epochs} epochs, "
          f"{sets} sets, sections {', '.join(sections)}; seed {seed}; work in {workdir}", flush=True)
    if "image" in sections:
        results["image"] = image.measure()
        print(f"image: {results['image'].get('why') or 'measured'}", flush=True)
    if {"startup", "overhead"} & set(sections):
        _healthy_server_sections(results, sections, workdir, base_task, args, sets, sync_sets, rng)
    if "outage" in sections:
        from .outage import run_outages

        print("outages: kill/restart and SIGSTOP/SIGCONT of the server after epoch 2", flush=True)
        results["outage"] = run_outages(workdir / "outage", base_task, args.quick, rng)
    if "sink" in sections:
        from .sink import run_sink

        print("sink: every client against a null sink, then one MLflow server sized", flush=True)
        results["sink"] = run_sink(workdir / "sink", base_task, sets, rng, args.quick)
    results["load_average"]["end"] = machine.load_average()
    results["duration_s"] = round(time.time() - started, 1)
    results["summary"] = summary.summarize(results)
    out = args.out or (SINK_RESULTS if sections == ["sink"] else workdir if args.only else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{time.strftime('%Y-%m-%d', time.localtime(started))}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print()
    print(report.console_summary(results, path))
    if not args.no_docs and out.resolve() in (RESULTS, SINK_RESULTS):
        print(report.generate())
    return 0


if __name__ == "__main__":
    sys.exit(main())
