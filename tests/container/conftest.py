"""A real Docker engine, the stand-in TFX bases, and the product image built on each from the one Dockerfile.

Every supported base (``BASES``: bases/README.md) gets its stand-in (cached by recipe hash) and its product
image (``--build-arg TFX_VERSION``); both are built for all bases at once, so their downloads and installs
overlap. Tests that take ``product_image`` run once per base.

Where no engine runs and we are root on Debian, docker.io is installed and dockerd is started by hand
(legacy builder, no buildx) and stopped by PID at the end. Elsewhere these tests skip, saying why.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import MEASUREMENTS

REPO = Path(__file__).resolve().parents[2]
#: the supported TFX bases; the first is the default image's (the README's, and `make demo`'s)
BASES = ("1.16.0", "1.17.3", "1.21.0")
DEFAULT_BASE = BASES[0]


def base_tag(tfx: str) -> str:
    return f"gcr.io/tfx-oss-public/tfx:{tfx}"


def image_tag(tfx: str) -> str:
    return f"trainer-runtime:test-tfx{tfx}"


def pins_of(tfx: str) -> str:
    if tfx == DEFAULT_BASE and os.environ.get("TR_BASE_PINS"):
        return os.environ["TR_BASE_PINS"]
    return str(REPO / "bases" / f"tfx-{tfx}" / "pins.txt")


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
    # Niced: its builds and containers inherit it, so on make test's 2 cores the main and fault suites,
    # which measure time, keep the CPU they need; the container suite takes what they leave.
    proc = subprocess.Popen(["nice", "-n", "10", "dockerd", "--pidfile", str(workdir / "dockerd.pid")], stdout=log,
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
    tfx: str
    tag: str
    build_seconds: float
    added_bytes: int


def _all_at_once(commands: dict[str, tuple[list[str], dict]], timeout: float) -> dict[str, tuple[int, str, float]]:
    """Run one command per base concurrently: {base: (exit code, output tail, its own seconds)}. Each is
    waited for on its own thread, so a base's seconds end when it does, not when the bases before it do."""
    started, results = time.monotonic(), {}

    def run(tfx: str, argv: list[str], kwargs: dict) -> None:
        begun = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)
        try:
            out, _ = proc.communicate(timeout=max(1.0, timeout - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        results[tfx] = (proc.returncode, out[-6000:], time.monotonic() - begun)

    threads = [threading.Thread(target=run, args=(tfx, argv, kwargs), daemon=True)
               for tfx, (argv, kwargs) in commands.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {tfx: results[tfx] for tfx in commands}


@pytest.fixture(scope="session")
def standin_bases(docker_engine) -> dict[str, str]:
    """Every base's stand-in, built concurrently (1.17 and 1.21 share one trixie rootfs)."""
    script = str(REPO / "tests/container/standin/build.sh")
    results = _all_at_once({tfx: (["bash", script, pins_of(tfx)], {"env": dict(os.environ, TFX_VERSION=tfx)})
                            for tfx in BASES}, timeout=3000)
    for tfx, (code, out, seconds) in results.items():
        assert code == 0, f"stand-in {tfx}: exit {code}\n{out}"
        MEASUREMENTS.append(f"stand-in base {tfx}: {out.strip().splitlines()[-1][4:]} in {seconds:.0f}s")
    return {tfx: base_tag(tfx) for tfx in BASES}


@pytest.fixture(scope="session")
def standin_base(standin_bases) -> str:
    return standin_bases[DEFAULT_BASE]


@pytest.fixture(scope="session")
def product_images(standin_bases) -> dict[str, BuiltImage]:
    """The product image on every base, from the one Dockerfile, built concurrently."""
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True).stdout.strip() or "unknown"
    env = dict(os.environ, DOCKER_BUILDKIT="0")
    results = _all_at_once({tfx: (["docker", "build", "--network", "host", "--build-arg", f"TFX_VERSION={tfx}",
                                   "--build-arg", "VERSION=0.1.0-test", "--build-arg", f"REVISION={revision}",
                                   "-t", image_tag(tfx), "."], {"cwd": REPO, "env": env}) for tfx in BASES},
                           timeout=3000)
    images = {}
    for tfx, (code, out, seconds) in results.items():
        assert code == 0, f"product image on {tfx}: exit {code}\n{out}"
        images[tfx] = BuiltImage(tfx, image_tag(tfx), seconds,
                                 _image_size(image_tag(tfx)) - _image_size(standin_bases[tfx]))
        MEASUREMENTS.append(f"product image on TFX {tfx} built in {seconds:.0f}s (all {len(BASES)} at once); "
                            f"adds {images[tfx].added_bytes / 1e6:.0f} MB over the base "
                            f"({_image_size(standin_bases[tfx]) / 1e9:.2f} GB)")
    return images


@pytest.fixture(scope="session", params=BASES, ids=[f"tfx{b}" for b in BASES])
def product_image(request, product_images) -> BuiltImage:
    """The product image, once per supported base."""
    return product_images[request.param]
