"""A real Docker engine, the stand-in TFX base, and the product image built from the unchanged Dockerfile.

Where no engine runs and we are root on Debian, docker.io is installed and dockerd is started by hand
(legacy builder, no buildx) and stopped by PID at the end. Elsewhere these tests skip, saying why.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import MEASUREMENTS

REPO = Path(__file__).resolve().parents[2]
IMAGE = "trainer-runtime:test"
BASE = "gcr.io/tfx-oss-public/tfx:1.16.0"


def _docker_ok() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True, timeout=30).returncode == 0


def _can_install() -> str | None:
    if os.geteuid() != 0:
        return "not root: cannot install or start a Docker engine"
    if not Path("/etc/debian_version").exists():
        return "not Debian: the fixture only knows how to install docker.io with apt-get"
    return None


def _install_dockerd() -> None:
    if shutil.which("dockerd"):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "docker.io"]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True, capture_output=True)
        subprocess.run(install, env=env, check=True, capture_output=True)


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory):
    if _docker_ok():
        yield "existing"
        return
    why = _can_install()
    if why:
        pytest.skip(f"NO DOCKER ENGINE, image tests skipped: {why}")
    _install_dockerd()
    workdir = tmp_path_factory.mktemp("dockerd")
    log = open(workdir / "dockerd.log", "wb")
    proc = subprocess.Popen(["dockerd", "--pidfile", str(workdir / "dockerd.pid")], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while not _docker_ok():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"dockerd did not start:\n{(workdir / 'dockerd.log').read_text()[-3000:]}")
        time.sleep(0.5)
    yield f"started pid {proc.pid}"
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def _image_size(tag: str) -> int:
    out = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", tag], capture_output=True,
                         text=True, check=True)
    return int(out.stdout.strip())


@dataclass
class BuiltImage:
    tag: str
    build_seconds: float
    added_bytes: int


@pytest.fixture(scope="session")
def standin_base(docker_engine):
    pins = os.environ.get("TR_BASE_PINS") or str(REPO.parent / "shared/base-images/tfx-1.16.0/pins.txt")
    started = time.monotonic()
    out = subprocess.run(["bash", str(REPO / "tests/container/standin/build.sh"), pins],
                         capture_output=True, text=True, timeout=3000)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    MEASUREMENTS.append(f"stand-in base: {out.stdout.strip().splitlines()[-1][4:]} in "
                        f"{time.monotonic() - started:.0f}s")
    return BASE


@pytest.fixture(scope="session")
def product_image(standin_base):
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True).stdout.strip() or "unknown"
    started = time.monotonic()
    out = subprocess.run(["docker", "build", "--network", "host", "--build-arg", "VERSION=0.1.0-test",
                          "--build-arg", f"REVISION={revision}", "-t", IMAGE, "."], cwd=REPO,
                         env=dict(os.environ, DOCKER_BUILDKIT="0"), capture_output=True, text=True,
                         timeout=3000)
    seconds = time.monotonic() - started
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-3000:]
    image = BuiltImage(IMAGE, seconds, _image_size(IMAGE) - _image_size(BASE))
    MEASUREMENTS.append(f"product image built in {seconds:.0f}s; adds {image.added_bytes / 1e6:.0f} MB "
                        f"over the base ({_image_size(BASE) / 1e9:.2f} GB)")
    return image
