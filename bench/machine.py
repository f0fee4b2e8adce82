"""Facts about the machine and the code under test, recorded with every result."""
from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from typing import Any

from .spawn import REPO

PACKAGES = ("tensorflow", "tf-keras", "tensorflow-recommenders", "mlflow-skinny", "protobuf", "urllib3", "psutil")


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else ""


def _protobuf_impl() -> str:
    try:
        from google.protobuf.internal import api_implementation

        return api_implementation.Type()
    except ImportError:
        return "unknown"


def facts() -> dict[str, Any]:
    import psutil

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
        "protobuf_implementation": _protobuf_impl(),
    }


def code_under_test(runtime_ref: str | None) -> dict[str, Any]:
    """Which runtime ran: a committed ref, or the working tree (with uncommitted files named)."""
    head = _git("rev-parse", "--short", "HEAD")
    if runtime_ref:
        return {"runtime": f"git {runtime_ref} ({_git('rev-parse', '--short', runtime_ref)})", "head": head,
                "uncommitted_runtime_files": []}
    dirty = [line[3:] for line in _git("status", "--porcelain", "--", "trainer_runtime").splitlines()]
    return {"runtime": f"working tree at {head}" + (" + uncommitted changes" if dirty else ""), "head": head,
            "uncommitted_runtime_files": dirty}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
