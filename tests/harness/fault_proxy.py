"""An auth + fault proxy in front of the MLflow server, standing in for Cloud Run.

Run as a script (the harness starts it as its own process):

    python fault_proxy.py --port 8124 --upstream http://127.0.0.1:5000 \
        --public-key pub.pem --audience http://127.0.0.1:8124

Auth, when ``require_auth`` is on, works like Cloud Run's IAM check: the
``Authorization: Bearer <JWT>`` header must carry an ID token whose signature
verifies with the test key, whose ``aud`` is the expected audience and which
has not expired (401 otherwise, no header: 403). Tokens whose email is not in
``invokers`` (when that list is set) get 403, as a missing roles/run.invoker does.

Faults, set through ``POST /__proxy__`` with a JSON body (any subset):
  cold_start_seconds  503 on every request for N seconds from now
  status, status_body fixed status for every request (e.g. 401, 403)
  status_path         with status: only for paths starting with this (e.g. the
                      Model Registry's /api/2.0/mlflow/registered-models/)
  host_403            403 "Invalid Host header" on API paths, /health passes
                      (what MLflow's own Host check does)
  latency             seconds to sleep before forwarding
  drop                close the connection without answering
  require_auth, audience, invokers
  reset               true: clear faults back to the start-up config
``GET /__proxy__`` returns the config and stats: request count per path and
every Authorization header *shape* seen ("Bearer <jwt>", "Bearer None", ...).
"""
from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

from google.auth import exceptions, jwt

HOST_403_BODY = "Invalid Host header - possible DNS rebinding attack detected"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer",
              "upgrade", "proxy-authorization", "proxy-authenticate", "content-length"}


def _shape(header: str | None) -> str:
    """Describe an Authorization header without keeping the secret."""
    if header is None:
        return "<none>"
    scheme, _, value = header.partition(" ")
    if value in ("None", "", "null"):
        return f"{scheme} {value or '<empty>'}"
    return f"{scheme} <{'jwt' if value.count('.') == 2 else 'opaque'}>"


class State:
    def __init__(self, upstream: str, public_key: str, base: dict) -> None:
        self.lock = threading.Lock()
        self.upstream = urlparse(upstream)
        self.public_key = public_key
        self.base = dict(base)
        self.config: dict = {}
        self.reset()
        self.requests: dict[str, int] = {}
        self.auth_shapes: dict[str, int] = {}
        self.auth_failures: list[str] = []

    def reset(self) -> None:
        self.config = {"cold_start_until": 0.0, "status": None, "status_body": "", "status_path": None,
                       "host_403": False, "latency": 0.0, "drop": False, **self.base}

    def count(self, path: str, auth: str | None) -> None:
        with self.lock:
            self.requests[path] = self.requests.get(path, 0) + 1
            shape = _shape(auth)
            self.auth_shapes[shape] = self.auth_shapes.get(shape, 0) + 1


def make_handler(state: State):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _reply(self, code: int, body: str, ctype: str = "text/plain") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _control(self) -> None:
            if self.command == "GET":
                with state.lock:
                    body = {"config": state.config, "requests": state.requests,
                            "auth_shapes": state.auth_shapes,
                            "auth_failures": state.auth_failures}
                    return self._reply(200, json.dumps(body), "application/json")
            update = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            with state.lock:
                if update.pop("reset", False):
                    state.reset()
                    state.requests.clear()
                    state.auth_shapes.clear()
                    state.auth_failures.clear()
                if "cold_start_seconds" in update:
                    state.config["cold_start_until"] = time.time() + float(update.pop("cold_start_seconds"))
                unknown = set(update) - set(state.config)
                if unknown:
                    return self._reply(400, f"unknown keys: {sorted(unknown)}")
                state.config.update(update)
                return self._reply(200, json.dumps(state.config), "application/json")

        def _check_auth(self, cfg: dict) -> tuple[int, str] | None:
            header = self.headers.get("Authorization")
            if not header:
                return 403, "Forbidden: Your client does not have permission to get URL (no token)"
            scheme, _, token = header.partition(" ")
            if scheme != "Bearer":
                return 401, "Unauthorized: bearer token required"
            try:
                claims = jwt.decode(token, certs=state.public_key, audience=cfg["audience"],
                                    clock_skew_in_seconds=0)
            except (exceptions.GoogleAuthError, ValueError) as exc:
                with state.lock:
                    state.auth_failures.append(type(exc).__name__ + ": " + str(exc)[:120])
                return 401, "Unauthorized: invalid token"
            invokers = cfg.get("invokers")
            if invokers and claims.get("email") not in invokers:
                return 403, f"Forbidden: {claims.get('email')} lacks roles/run.invoker"
            return None

        def _handle(self) -> None:
            path = urlparse(self.path).path
            if path == "/__proxy__":
                return self._control()
            body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
            state.count(path, self.headers.get("Authorization"))
            with state.lock:
                cfg = dict(state.config)
            if cfg["drop"]:
                self.close_connection = True
                self.connection.close()
                return
            if cfg["latency"]:
                time.sleep(float(cfg["latency"]))
            if time.time() < cfg["cold_start_until"]:
                return self._reply(503, "Service Unavailable (cold start)")
            if cfg.get("require_auth"):
                denied = self._check_auth(cfg)
                if denied:
                    return self._reply(*denied)
            if cfg["status"] and (not cfg["status_path"] or path.startswith(cfg["status_path"])):
                return self._reply(int(cfg["status"]), cfg["status_body"] or "injected")
            if cfg["host_403"] and not path.endswith("/health"):
                return self._reply(403, HOST_403_BODY)
            self._forward(body)

        def _forward(self, body: bytes) -> None:
            up = state.upstream
            conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in HOP_BY_HOP and k.lower() not in ("host", "authorization")}
            headers["Host"] = f"{up.hostname}:{up.port}"
            try:
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except OSError as exc:
                return self._reply(502, f"upstream error: {exc}")
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
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--public-key", required=True, help="PKCS#1 PEM public key")
    parser.add_argument("--audience", required=True)
    parser.add_argument("--require-auth", action="store_true")
    args = parser.parse_args()
    with open(args.public_key) as fh:
        public_key = fh.read()
    base = {"require_auth": args.require_auth, "audience": args.audience, "invokers": None}
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(State(args.upstream, public_key, base)))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
