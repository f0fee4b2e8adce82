"""A null sink that speaks the MLflow REST calls the bench's clients make, and stores nothing.

``python -m bench.sink_server --port N`` (stdlib only; its own process, so the
bench reads its CPU apart from the training's). It answers every call at once
from memory: experiments and runs exist as far as the clients need them to
(create, get, get-by-name, update), every log call (log-batch, log-metric,
log-parameter, set-tag, log-inputs, log-model) and artifact upload is read to the
end, counted and dropped. What the server costs is then the sink's own CPU, a
fraction of MLflow's; what is left of a configuration's overhead is its client.

``GET /__sink__`` returns the counts: requests per path, metric points per run
(raw and distinct ``(key, step)``), and every path the sink did not know (404
``ENDPOINT_NOT_FOUND``, as a server without that API answers), so a bench row
that called something unexpected says so instead of passing quietly.
"""
from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API = "/api/2.0/mlflow/"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
#: log calls that carry nothing the bench counts: answered {} after their body is read
ACCEPTED = {"runs/log-parameter", "runs/set-tag", "runs/delete-tag", "runs/log-inputs", "runs/log-model",
            "runs/log-outputs", "experiments/set-experiment-tag", "logged-models/search"}


class Sink:
    """The state the clients need to see (experiments, runs) and the counts the bench reads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.requests: Counter[str] = Counter()
        self.unknown: Counter[str] = Counter()
        self.raw: Counter[str] = Counter()
        self.distinct: dict[str, set[tuple[str, int]]] = defaultdict(set)
        self.bytes_in = 0

    # --- experiments and runs ------------------------------------------------------------
    def experiment(self, name: str) -> dict[str, Any]:
        with self.lock:
            found = next((e for e in self.experiments.values() if e["name"] == name), None)
            if found is None:
                found = {"experiment_id": str(len(self.experiments) + 1), "name": name,
                         "artifact_location": f"mlflow-artifacts:/{len(self.experiments) + 1}",
                         "lifecycle_stage": "active", "tags": []}
                self.experiments[found["experiment_id"]] = found
            return found

    def create_run(self, body: dict[str, Any]) -> dict[str, Any]:
        run_id = uuid.uuid4().hex
        experiment_id = str(body.get("experiment_id") or "0")
        info = {"run_id": run_id, "run_uuid": run_id, "experiment_id": experiment_id,
                "run_name": body.get("run_name") or run_id[:8], "user_id": body.get("user_id") or "",
                "status": "RUNNING", "start_time": body.get("start_time") or int(time.time() * 1000),
                "artifact_uri": f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts",
                "lifecycle_stage": "active"}
        run = {"info": info, "data": {"tags": list(body.get("tags") or []), "params": [], "metrics": []},
               "inputs": {}}
        with self.lock:
            self.runs[run_id] = run
        return run

    def count_metrics(self, run_id: str, metrics: list[dict[str, Any]]) -> None:
        with self.lock:
            self.raw[run_id] += len(metrics)
            seen = self.distinct[run_id]
            for metric in metrics:
                seen.add((metric.get("key", ""), int(metric.get("step") or 0)))

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {"requests": dict(self.requests), "unknown": dict(self.unknown), "bytes_in": self.bytes_in,
                    "points": {run_id: {"raw": self.raw[run_id],
                                        "distinct": len(self.distinct[run_id]),
                                        "distinct_fit": sum(1 for key, _ in self.distinct[run_id]
                                                            if not key.startswith("system/"))}
                               for run_id in self.runs}}


def make_handler(sink: Sink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as MLflow's requests session expects of a server
        # The headers and the body go out in two writes: with Nagle's algorithm on, the body waits for the
        # client's delayed ACK (measured: ~45 ms per MLflow call, 8 calls a step took 0.36 s).
        disable_nagle_algorithm = True

        def log_message(self, fmt: str, *args: Any) -> None:  # no per-request log: it would be the cost
            pass

        def _reply(self, code: int, payload: Any, ctype: str = "application/json") -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length) if length else b""
            with sink.lock:
                sink.bytes_in += len(data)
            return data

        def _missing(self, path: str) -> None:
            with sink.lock:
                sink.unknown[f"{self.command} {path}"] += 1
            self._reply(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"the sink has no {path}"})

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self._route("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._route("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._route("PUT")

        def do_PATCH(self) -> None:  # noqa: N802
            self._route("PATCH")

        def _route(self, method: str) -> None:
            url = urlsplit(self.path)
            path, query = url.path, {k: v[0] for k, v in parse_qs(url.query).items()}
            raw = self._body()
            with sink.lock:
                sink.requests[path] += 1
            if path == "/__sink__":
                return self._reply(200, sink.stats())
            if path == "/health":
                return self._reply(200, b"OK", "text/plain")
            if path == "/version":
                return self._reply(200, b"null-sink", "text/plain")
            if path.startswith(ARTIFACTS):
                return self._reply(200, {} if method == "PUT" else {"files": []})
            if not path.startswith(API):
                return self._missing(path)
            body = json.loads(raw or b"{}") if method != "GET" else query
            call = path[len(API):]
            if call == "experiments/get-by-name":
                return self._reply(200, {"experiment": sink.experiment(body["experiment_name"])})
            if call == "experiments/get":
                found = sink.experiments.get(str(body.get("experiment_id")))
                if found is None:
                    return self._reply(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no experiment"})
                return self._reply(200, {"experiment": found})
            if call == "experiments/create":
                return self._reply(200, {"experiment_id": sink.experiment(body["name"])["experiment_id"]})
            if call == "runs/create":
                return self._reply(200, {"run": sink.create_run(body)})
            if call == "runs/get":
                run = sink.runs.get(body.get("run_id") or body.get("run_uuid") or "")
                if run is None:
                    return self._reply(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no run"})
                return self._reply(200, {"run": run})
            if call == "runs/update":
                run = sink.runs.get(body.get("run_id") or body.get("run_uuid") or "")
                if run is None:
                    return self._reply(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no run"})
                for key in ("status", "end_time", "run_name"):
                    if body.get(key) is not None:
                        run["info"][key] = body[key]
                return self._reply(200, {"run_info": run["info"]})
            if call == "runs/log-batch":
                sink.count_metrics(body.get("run_id", ""), body.get("metrics") or [])
                return self._reply(200, {})
            if call == "runs/log-metric":
                sink.count_metrics(body.get("run_id") or body.get("run_uuid", ""), [body])
                return self._reply(200, {})
            if call in ACCEPTED:
                return self._reply(200, {})
            return self._missing(path)

    return Handler


def serve(port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), make_handler(Sink()))
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sink_server", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    serve(args.port).serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
