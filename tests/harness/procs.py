"""Start a server process on a free loopback port, wait until it answers, stop it by PID."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


class FixtureStartError(RuntimeError):
    """A live-server fixture did not become ready; the message carries its log tail."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_status(url: str, timeout: float = 2.0, headers: dict | None = None) -> int | None:
    """Status code of a GET, or None when nothing answered."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


@dataclass
class ManagedProcess:
    """A child process in its own session, so stop() reaches its whole group."""

    name: str
    cmd: list[str]
    log_path: Path
    env: dict | None = None
    cwd: str | None = None
    proc: subprocess.Popen | None = field(default=None, init=False)
    started_in: float = field(default=0.0, init=False)

    def start(self, ready_url: str, timeout: float, headers: dict | None = None) -> "ManagedProcess":
        began = time.monotonic()
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                     cwd=self.cwd, start_new_session=True)
        log.close()
        deadline = began + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise FixtureStartError(f"{self.name} exited with {self.proc.returncode} before it was "
                                        f"ready.\n--- log tail ---\n{self.log_tail()}")
            if http_status(ready_url, headers=headers) == 200:
                self.started_in = time.monotonic() - began
                return self
            time.sleep(0.2)
        self.stop()
        raise FixtureStartError(f"{self.name} not ready at {ready_url} after {timeout:.0f}s.\n"
                                f"--- log tail ---\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"

    def stop(self, grace: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=grace)
        except ProcessLookupError:
            pass
