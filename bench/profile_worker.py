"""`python -m bench.profile_worker`: where the runtime's background CPU per logged point goes.

Fits the bench workload with the runtime logging every step against a live
MLflow server, twice: once plain, for the CPU of the background threads per
point and the HTTP requests made; once with a sampling profiler (the stacks of
the background threads every millisecond, via ``sys._current_frames``), which
keeps the worker's real batching, unlike cProfile, whose own cost slows the worker
until it sends a few huge batches. Samples are grouped by what the thread was
doing; waiting on the socket or on the queue costs no CPU. (py-spy, which samples
without the GIL, is the sharper tool when it can be installed.) ``--runtime-ref REF``
profiles the runtime as committed at REF instead of the working tree.
"""
from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import threading
import time
from pathlib import Path

# (category, markers): the first category whose marker is in a frame's file path or
# function, scanning the stack from the innermost frame outwards.
CATEGORIES = (
    ("waiting: socket (the server)", ("socket.py:readinto", "ssl.py:recv", "selectors.py:select")),
    ("waiting: queue/event (no work)", ("threading.py:wait", "queue.py:get")),
    ("JSON encode/decode", ("/json/",)),
    ("protobuf <-> JSON (MessageToJson, int64 marking)", ("google/protobuf/", "proto_json_utils.py")),
    ("MLflow entities (Metric, to_proto)", ("mlflow/entities/",)),
    ("HTTP client (requests, urllib3, http.client)", ("/requests/", "/urllib3/", "http/client.py",
                                                       "mlflow/utils/rest_utils.py", "mlflow/utils/request_utils.py")),
    ("MLflow store/client", ("mlflow/store/", "mlflow/tracking/")),
    ("the runtime's own code", ("trainer_runtime/",)),
)


class Sampler:
    """Samples the stacks of every thread but the main one and its own, every ``interval`` s."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.categories: collections.Counter = collections.Counter()
        self.leaves: collections.Counter = collections.Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def __enter__(self) -> "Sampler":
        # The sampler needs the GIL to look; by default a busy training thread holds it 5 ms at a time.
        self._switch = sys.getswitchinterval()
        sys.setswitchinterval(self.interval / 2)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        sys.setswitchinterval(self._switch)

    def _run(self) -> None:
        skip = {threading.main_thread().ident, threading.get_ident()}
        while not self._stop.wait(self.interval):
            for ident, frame in sys._current_frames().items():
                if ident in skip:
                    continue
                stack = []
                while frame is not None:
                    stack.append(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")
                    frame = frame.f_back
                if not stack:
                    continue
                self.categories[self._category(stack)] += 1
                self.leaves[stack[0].rsplit("/", 2)[-2] + "/" + stack[0].rsplit("/", 1)[-1]] += 1

    @staticmethod
    def _category(stack: list[str]) -> str:
        for where in stack:
            for name, markers in CATEGORIES:
                if any(marker in where for marker in markers):
                    return name
        return "other"


def _count_requests(counter: dict) -> None:
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
    parser.add_argument("--quick", action="store_true", help="the quick workload (180 steps)")
    parser.add_argument("--top", type=int, default=12)
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
    counter = collections.Counter()
    server, uri = start_mlflow(workdir / "mlflow")
    try:
        probes = install_probes(server.pid)
        _count_requests(counter)
        data = dataset(workload)
        warm_up(data)
        run_config(config, workload.with_epochs(1), data, uri, probes, workdir)  # warm the client
        counter.clear()
        plain = run_config(config, workload, data, uri, probes, workdir)
        requests = counter["requests"]
        with Sampler() as sampler:
            started = time.perf_counter()
            run_config(config, workload, data, uri, probes, workdir)
            sampled_s = time.perf_counter() - started
    finally:
        server.stop()
    import trainer_runtime

    points = config.expected_points(workload, plain["metrics_per_log"] or 8)
    cpu = plain["background_cpu_s"]
    print(f"runtime {trainer_runtime.__file__}; {workload.steps} steps, {points:,} points, "
          f"{requests:,} HTTP requests ({points / max(requests, 1):.1f} points per request)")
    print(f"background threads CPU: {cpu:.3f} s = {1e6 * cpu / points:.1f} µs per point, "
          f"{1e6 * cpu / max(requests, 1):.0f} µs per request; whole process {plain['client_cpu_s']:.2f} s; "
          f"MLflow server {plain['server_cpu_s']:.2f} s = {1e6 * plain['server_cpu_s'] / points:.0f} µs per point; "
          f"training-thread hook {plain['hook_us_per_step']:.1f} µs/step, Keras dispatch "
          f"{plain['dispatch_us_per_step']:.1f} µs/step")
    busy = {k: v for k, v in sampler.categories.items() if not k.startswith("waiting")}
    total_busy = sum(busy.values()) or 1
    print(f"\nsampled fit ({sampled_s:.1f} s, {sum(sampler.categories.values()):,} samples of background threads):")
    for name, count in sampler.categories.most_common():
        share = f"{100 * count / total_busy:5.1f} % of busy ≈ {1e6 * cpu * count / total_busy / points:5.1f} µs/pt" \
            if name in busy else "(no CPU)"
        print(f"  {count:6d}  {name:<52} {share}")
    print("\ninnermost frames:")
    for leaf, count in sampler.leaves.most_common(args.top):
        print(f"  {count:6d}  {leaf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
