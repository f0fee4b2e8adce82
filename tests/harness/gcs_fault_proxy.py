"""A fault proxy in front of the storage emulator: GCS answers 503 to the first N uploads.

The gcp-storage-emulator cannot inject faults, so the tests point
STORAGE_EMULATOR_HOST here instead. Run as a script (the harness starts it as
its own process):

    python gcs_fault_proxy.py --port 8125 --upstream http://127.0.0.1:9023

Faults, set through ``POST /__proxy__`` with a JSON body (any subset):
  fail_next     answer ``status`` to the next N requests whose path starts with ``path_prefix``
  fail_always   true: answer ``status`` to every such request
  status        the status code to answer (default 503, GCS's "Backend Error")
  hang_seconds  sleep this long before answering a failed request (a GCS that hangs)
  path_prefix   default ``/upload/`` (object uploads, multipart and resumable)
  reset         true: clear faults and counts
``GET /__proxy__`` returns the config and counts: ``matched`` (requests under the
prefix), ``failed`` (of those, answered with the fault), ``forwarded`` (all paths).
"""
from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}
DEFAULTS = {"fail_next": 0, "fail_always": False, "status": 503, "path_prefix": "/upload/", "hang_seconds": 0.0}


class State:
    def __init__(self, upstream: str) -> None:
        self.lock = threading.Lock()
        self.upstream = urlparse(upstream)
        self.reset()

    def reset(self) -> None:
        self.config = dict(DEFAULTS)
        self.counts = {"matched": 0, "failed": 0, "forwarded": 0}

    def fault_for(self, path: str) -> int | None:
        """The status to answer instead of forwarding, or None; counts the request."""
        with self.lock:
            if not path.startswith(self.config["path_prefix"]):
                self.counts["forwarded"] += 1
                return None
            self.counts["matched"] += 1
            if self.config["fail_always"] or self.config["fail_next"] > 0:
                self.config["fail_next"] = max(0, self.config["fail_next"] - 1)
                self.counts["failed"] += 1
                return int(self.config["status"])
            self.counts["forwarded"] += 1
            return None


def make_handler(state: State):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _reply(self, code: int, body: str, ctype: str = "application/json") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _control(self, body: bytes) -> None:
            with state.lock:
                if self.command == "POST":
                    update = json.loads(body or b"{}")
                    if update.pop("reset", False):
                        state.reset()
                    unknown = set(update) - set(DEFAULTS)
                    if unknown:
                        return self._reply(400, json.dumps({"unknown keys": sorted(unknown)}))
                    state.config.update(update)
                return self._reply(200, json.dumps({"config": state.config, **state.counts}))

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
            path = urlparse(self.path).path
            if path == "/__proxy__":
                return self._control(body)
            status = state.fault_for(path)
            if status is not None:
                with state.lock:
                    hang = float(state.config["hang_seconds"])
                time.sleep(hang)
                # GCS's own shape for a transient backend error
                error = {"error": {"code": status, "message": "Backend Error (injected)",
                                   "errors": [{"reason": "backendError", "message": "Backend Error"}]}}
                return self._reply(status, json.dumps(error))
            self._forward(body)

        def _forward(self, body: bytes) -> None:
            up = state.upstream
            conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | {"host"}}
            headers["Host"] = f"{up.hostname}:{up.port}"
            try:
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except OSError as exc:
                return self._reply(502, json.dumps({"error": f"upstream error: {exc}"}))
            finally:
                conn.close()
            self.send_response(resp.status)
            for key, value in resp.getheaders():
                if key.lower() not in HOP_BY_HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the storage emulator, http://host:port")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(State(args.upstream)))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
