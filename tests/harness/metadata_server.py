"""A local GCE metadata server that google-auth's real code talks to.

Run as a script (the harness starts it as its own process):

    python metadata_server.py --port 8123 --key key.pem --email sa@p.iam.gserviceaccount.com

It answers the endpoints google-auth uses for ID tokens on GCE/Cloud Run:
the ping (``/`` with ``Metadata-Flavor: Google``), ``.../default/identity`` (a
JWT signed by the test key), ``.../default/?recursive=true`` and
``.../default/email``. Everything but the ping requires ``Metadata-Flavor:
Google``, like the real server.

Control (for tests), JSON over ``/__control__``:
  GET  -> {"tokens_issued": n, "audiences": [...], "config": {...}}
  POST {"lifetime": seconds, "fail_status": 500|null, "email": "..."} -> updates config
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from google.auth import crypt, jwt

SA_PREFIX = "/computeMetadata/v1/instance/service-accounts/default"


class State:
    def __init__(self, signer: crypt.Signer, email: str) -> None:
        self.lock = threading.Lock()
        self.signer = signer
        self.config = {"lifetime": 3600, "fail_status": None, "email": email}
        self.tokens_issued = 0
        self.audiences: list[str] = []

    def issue(self, audience: str) -> str:
        with self.lock:
            now = int(time.time())
            email = self.config["email"]
            payload = {
                "iss": "https://accounts.google.com",
                "aud": audience,
                "azp": "1234567890",
                "sub": "1234567890",
                "email": email,
                "email_verified": True,
                "iat": now,
                "exp": now + int(self.config["lifetime"]),
            }
            self.tokens_issued += 1
            self.audiences.append(audience)
        return jwt.encode(self.signer, payload).decode()


def make_handler(state: State):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output quiet
            pass

        def _send(self, code: int, body: str, ctype: str = "text/plain") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Metadata-Flavor", "Google")
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            url = urlparse(self.path)
            query = parse_qs(url.query)
            if url.path == "/__control__":
                with state.lock:
                    body = {"tokens_issued": state.tokens_issued,
                            "audiences": list(state.audiences), "config": dict(state.config)}
                return self._send(200, json.dumps(body), "application/json")
            if url.path in ("", "/"):
                return self._send(200, "ok")
            if self.headers.get("Metadata-Flavor") != "Google":
                return self._send(403, "Missing Metadata-Flavor: Google header")
            fail = state.config["fail_status"]
            if fail:
                return self._send(int(fail), "injected failure")
            if url.path == f"{SA_PREFIX}/identity":
                audience = query.get("audience", [""])[0]
                if not audience:
                    return self._send(400, "audience required")
                return self._send(200, state.issue(audience))
            if url.path in (f"{SA_PREFIX}/", SA_PREFIX):
                info = {"email": state.config["email"], "aliases": ["default"],
                        "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}
                return self._send(200, json.dumps(info), "application/json")
            if url.path == f"{SA_PREFIX}/email":
                return self._send(200, state.config["email"])
            if url.path == f"{SA_PREFIX}/token":
                token = {"access_token": "test-access-token", "expires_in": 3600,
                         "token_type": "Bearer"}
                return self._send(200, json.dumps(token), "application/json")
            if url.path == "/computeMetadata/v1/project/project-id":
                return self._send(200, "test-project")
            return self._send(404, "not found")

        def do_POST(self):
            if urlparse(self.path).path != "/__control__":
                return self._send(404, "not found")
            length = int(self.headers.get("Content-Length", 0))
            update = json.loads(self.rfile.read(length) or b"{}")
            reset = update.pop("reset_stats", False)
            with state.lock:
                unknown = set(update) - set(state.config)
                if unknown:
                    return self._send(400, f"unknown keys: {sorted(unknown)}")
                state.config.update(update)
                if reset:
                    state.tokens_issued = 0
                    state.audiences.clear()
            return self._send(200, json.dumps(state.config), "application/json")

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", required=True, help="PKCS#1 PEM private key")
    parser.add_argument("--email", default="trainer@test-project.iam.gserviceaccount.com")
    args = parser.parse_args()
    with open(args.key) as fh:
        signer = crypt.RSASigner.from_string(fh.read(), key_id="test-key")
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(State(signer, args.email)))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
