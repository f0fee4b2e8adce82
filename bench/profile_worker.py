"""`python -m bench.profile_worker`: where the runtime's background CPU per logged point goes.

Fits the bench workload with the runtime logging every step against a live
MLflow server, twice: once plain, for the CPU of the background threads per
point and the HTTP requests made; once with cProfile on every background
thread. Own time is grouped by the module a function lives in; waiting (socket
reads, locks, sleeps) costs no CPU and is shown apart. cProfile's own cost
inflates the profiled run, so the split is applied to the plain run's CPU. It
also slows the worker, which may then batch more points per request than in the
plain run; both request counts are printed. ``--runtime-ref REF`` profiles the
runtime as committed at REF instead of the working tree.
"""
from __future__ import annotations

import argparse
import collections
import cProfile
import pstats
import sys
import tempfile
import threading
from pathlib import Path

#: Own time of a function, grouped by where it lives (first match wins).
GROUPS = (
    ("waiting (socket read, lock, sleep, select)", ("recv_into", "'acquire'", "'sleep'", "select", "'wait'")),
    ("JSON encode/decode (json)", ("/json/",)),
    ("proto -> JSON dict (protobuf json_format, MLflow's int64 marking)", ("google/protobuf/", "proto_json_utils")),
    ("MLflow entities (Metric, to_proto)", ("mlflow/entities/",)),
    ("HTTP (requests, urllib3, http.client, socket send)", ("/requests/", "/urllib3/", "http/client.py",
                                                           "socket.py", "sendall", "rest_utils.py",
                                                           "request_utils.py")),
    ("MLflow client/store", ("mlflow/",)),
    ("the runtime's own code", ("trainer_runtime/",)),
)


def _group(where: str) -> str:
    for name, markers in GROUPS:
        if any(marker in where for marker in markers):
            return name
    return "other (builtins, stdlib)"


def _profile_threads(profiles: list[cProfile.Profile]) -> None:
    """Attach a cProfile to every thread started from now on (not to the main one)."""
    original = threading.Thread.run

    def run(thread):
        profile = cProfile.Profile()
        profiles.append(profile)
        profile.enable()
        try:
            original(thread)
        finally:
            profile.disable()
    threading.Thread.run = run


def _count_requests(counter: collections.Counter) -> None:
    """Count HTTP requests (MLflow's client and the runtime's both go through requests)."""
    import requests.adapters

    original = requests.adapters.HTTPAdapter.send

    def send(self, request, *args, **kwargs):
        counter["requests"] += 1
        return original(self, request, *args, **kwargs)
    requests.adapters.HTTPAdapter.send = send


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_worker", description=__doc__.splitlines()[0])
    parser.add_argument("--runtime-ref", help="profile trainer_runtime as committed at this git ref")
    parser.add_argument("--every", type=int, default=1, help="log every N steps (default 1)")
    parser.add_argument("--quick", action="store_true", help="the quick workload (120 steps)")
    parser.add_argument("--top", type=int, default=15, help="functions listed by own time")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="tr-bench-profile-"))
    if args.runtime_ref:
        from .__main__ import _export_runtime

        sys.path.insert(0, _export_runtime(args.runtime_ref, workdir))
    from tests.harness.servers import start_mlflow

    from .configs import Config
    from .drivers import install_probes, run_config
    from .workload import FULL, QUICK, dataset, warm_up

    workload = QUICK if args.quick else FULL
    config = Config(f"runtime-step{args.every}", "runtime", args.every, "profiled")
    counter: collections.Counter = collections.Counter()
    profiles: list[cProfile.Profile] = []
    server, uri = start_mlflow(workdir / "mlflow")
    try:
        probes = install_probes(server.pid)
        _count_requests(counter)
        data = dataset(workload)
        warm_up(data)
        run_config(config, workload.with_epochs(1), data, uri, probes, workdir)  # warm the client
        counter.clear()
        plain = run_config(config, workload, data, uri, probes, workdir)
        plain_requests = counter["requests"]
        counter.clear()
        _profile_threads(profiles)
        run_config(config, workload, data, uri, probes, workdir)
    finally:
        server.stop()
    import trainer_runtime

    points = config.expected_points(workload, plain["metrics_per_log"] or 8)
    cpu = plain["background_cpu_s"]
    print(f"runtime {trainer_runtime.__file__}; {workload.steps} steps, {points:,} points; HTTP requests: "
          f"{plain_requests:,} plain ({points / max(plain_requests, 1):.0f} points each), "
          f"{counter['requests']:,} profiled")
    print(f"background threads CPU: {cpu:.3f} s = {1e6 * cpu / points:.1f} µs per point; whole process "
          f"{plain['client_cpu_s']:.2f} s; MLflow server {plain['server_cpu_s']:.2f} s "
          f"({1e6 * plain['server_cpu_s'] / points:.0f} µs per point); training thread: hook "
          f"{plain['hook_us_per_step']:.1f} µs/step, Keras dispatch {plain['dispatch_us_per_step']:.1f} µs/step")
    stats = None
    for profile in profiles:
        if profile.getstats():
            stats = pstats.Stats(profile) if stats is None else stats.add(profile)
    if stats is None:
        print("no background thread was profiled")
        return 1
    groups: collections.Counter = collections.Counter()
    own = []
    for (path, line, name), (_, _, tottime, _, _) in stats.stats.items():
        where = f"{path}:{name}" if path != "~" else name
        groups[_group(where)] += tottime
        own.append((tottime, where))
    busy = sum(t for g, t in groups.items() if not g.startswith("waiting")) or 1e-9
    print(f"\nprofiled background threads, own time by group (µs per point = share of busy time × the plain "
          f"run's {1e6 * cpu / points:.1f} µs):")
    for group, seconds in groups.most_common():
        tail = "(no CPU)" if group.startswith("waiting") else \
            f"{100 * seconds / busy:5.1f} %  ≈ {1e6 * cpu * seconds / busy / points:5.1f} µs/pt"
        print(f"  {seconds:8.3f} s  {group:<66} {tail}")
    print(f"\ntop {args.top} functions by own time:")
    for seconds, where in sorted(own, reverse=True)[:args.top]:
        print(f"  {seconds:8.3f} s  {where.split('site-packages/')[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
