"""Every supported TFX base has its pins, derived from TFX's own build files, and a hash lock that keeps them.

The default base (1.16.0) is locked at the repository's root (requirements.in/.lock, checked in
test_environment.py); the others live in bases/tfx-<version>/. For each: the pins are exactly what
devtools/base_pins.py derives from the kept upstream constraints (1.16's also equal the facts in
../shared), the lock pins every package with hashes, holds every exact pin of its base at that version,
carries nvidia-ml-py for the GPU metrics, and `make lock` reproduces it byte for byte.
"""
from __future__ import annotations

import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from devtools.base_pins import BASES, derive, exact_pins, normalize, upstream_files

REPO = Path(__file__).resolve().parent.parent
#: what `make lock` resolves in bases/ (OTHER_BASES in the Makefile); the default base is locked at the root
OTHER_BASES = ("1.17.3", "1.21.0")
ALL_BASES = ("1.16.0", *OTHER_BASES)
LOCKED = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)", re.M)


def _lock_path(version: str) -> Path:
    return REPO / "requirements.lock" if version == "1.16.0" else BASES / f"tfx-{version}" / "requirements.lock"


def _locked(version: str) -> dict[str, str]:
    return {normalize(n): v for n, v in LOCKED.findall(_lock_path(version).read_text())}


def test_the_makefile_locks_exactly_these_bases():
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^OTHER_BASES := (.*)$", makefile, re.M).group(1).split() == list(OTHER_BASES)
    assert sorted(p.name for p in BASES.iterdir() if p.is_dir()) == [f"tfx-{v}" for v in ALL_BASES]


@pytest.mark.parametrize("version", ALL_BASES)
def test_pins_are_derived_from_tfx_build_constraints(version):
    folder = BASES / f"tfx-{version}"
    upstream = upstream_files(folder)
    assert upstream, f"no upstream constraints kept in {folder}"
    assert (folder / "pins.txt").read_text() == derive(*upstream), "run python -m devtools.base_pins"


def test_the_default_bases_derivation_is_the_recorded_fact():
    shared = REPO.parent / "shared" / "base-images" / "tfx-1.16.0" / "pins.txt"
    assert shared.exists(), f"{shared} is missing: the repository is checked out without ../shared beside it"
    assert (BASES / "tfx-1.16.0" / "pins.txt").read_text() == shared.read_text()


@pytest.mark.parametrize("version", OTHER_BASES)
def test_base_lock_pins_every_package_with_hashes(version):
    text = _lock_path(version).read_text()
    entries = [e for e in re.split(r"\n(?=[A-Za-z])", text.strip()) if LOCKED.match(e)]
    assert len(entries) > 200
    assert [e.split()[0] for e in entries if "--hash=sha256:" not in e] == []


@pytest.mark.parametrize("version", ALL_BASES)
def test_lock_holds_every_exact_pin_of_its_base(version):
    """No locked version deviates from the base's: the product layer then reinstalls nothing the base has."""
    pins = exact_pins((BASES / f"tfx-{version}" / "pins.txt").read_text())
    lock = _locked(version)
    deviations = {n: (pins[n], lock[n]) for n in pins.keys() & lock.keys() if pins[n] != lock[n]}
    assert deviations == {}
    assert lock["tfx"] == version and lock["tensorflow"] == pins["tensorflow"]
    assert "nvidia-ml-py" in lock, "the GPU system metrics need NVML's bindings"


def _compile(version: str, out: Path) -> subprocess.CompletedProcess:
    uv = os.environ.get("TR_UV")
    assert uv, "run through `make test` (TR_UV names the pinned uv)"
    folder = os.path.relpath(BASES / f"tfx-{version}", REPO)
    # BASE_LOCK_FLAGS in the Makefile; the paths must read as there (uv writes none into the lock).
    return subprocess.run([uv, "pip", "compile", "--python-version", "3.10", "--python-platform",
                           "x86_64-manylinux_2_39", "--generate-hashes", "--no-header", "--quiet",
                           f"{folder}/requirements.in", "-c", f"{folder}/pins.txt", "-o", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)


def test_make_lock_reproduces_every_base_lock(tmp_path):
    """Re-resolving (what `make lock` runs for OTHER_BASES) gives each lock byte for byte; concurrently."""
    with ThreadPoolExecutor(max_workers=len(OTHER_BASES)) as pool:
        results = dict(zip(OTHER_BASES, pool.map(lambda v: _compile(v, tmp_path / f"{v}.lock"), OTHER_BASES)))
    for version, result in results.items():
        assert result.returncode == 0, f"{version}: {result.stderr}"
        assert (tmp_path / f"{version}.lock").read_text() == _lock_path(version).read_text(), version
