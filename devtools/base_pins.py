"""A TFX base image's pins, derived from TFX's own build files at a release tag.

The official image ``gcr.io/tfx-oss-public/tfx:<version>`` installs TFX with
``-c tfx/tools/docker/requirements.txt`` and, from 1.17, ``-c
tfx/tools/docker/build_constraints.txt`` (setuptools, wheel, pip). Those files,
with comments and blank lines stripped, are the best public record of what the
image holds: ``bases/tfx-<version>/pins.txt``. The upstream files are kept beside
it (``upstream-*.txt``) so a test can check the derivation offline, and 1.16's
derivation reproduces ../shared/base-images/tfx-1.16.0/pins.txt exactly.

    python -m devtools.base_pins TFX_CHECKOUT TAG   # writes bases/tfx-<version>/{upstream-*,pins}.txt

TFX_CHECKOUT is a clone of github.com/tensorflow/tfx with its tags (the tool
reads ``git show <tag>:tfx/tools/docker/requirements.txt``; nothing is fetched).
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BASES = REPO / "bases"
#: the constraints files of the image's build, in the order its pip install names them -> the copy kept here
UPSTREAM = {"tfx/tools/docker/requirements.txt": "upstream-requirements.txt",
            "tfx/tools/docker/build_constraints.txt": "upstream-build_constraints.txt"}


def derive(*upstream: str) -> str:
    """The pins: each requirement line of the constraints files, comments and trailing blanks stripped."""
    lines = [re.sub(r"#.*", "", line).rstrip() for text in upstream for line in text.splitlines()]
    return "".join(f"{line}\n" for line in lines if line)


def upstream_files(folder: Path) -> list[str]:
    """The kept upstream constraints of a base, in UPSTREAM's order (1.16 has no build_constraints)."""
    return [(folder / kept).read_text() for kept in UPSTREAM.values() if (folder / kept).exists()]


def exact_pins(pins: str) -> dict[str, str]:
    """``name==version`` lines by normalized name (ranges such as ``markdown>=3.6`` are not pins)."""
    found = {}
    for line in pins.splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;]+)", line.strip())
        if match:
            found[normalize(match.group(1))] = match.group(3)
    return found


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    checkout, tag = Path(argv[0]), argv[1]
    folder = BASES / f"tfx-{tag.lstrip('v')}"
    folder.mkdir(parents=True, exist_ok=True)
    for path, kept in UPSTREAM.items():
        shown = subprocess.run(["git", "-C", str(checkout), "show", f"{tag}:{path}"], capture_output=True, text=True)
        if shown.returncode != 0:
            print(f"{tag} has no {path}")
            continue
        (folder / kept).write_text(shown.stdout)
        blob = subprocess.run(["git", "-C", str(checkout), "rev-parse", f"{tag}:{path}"], capture_output=True,
                              text=True, check=True).stdout.strip()
        print(f"{tag}:{path} (blob {blob}) -> {(folder / kept).relative_to(REPO)}")
    pins = derive(*upstream_files(folder))
    (folder / "pins.txt").write_text(pins)
    print(f"wrote {(folder / 'pins.txt').relative_to(REPO)}: {len(exact_pins(pins))} exact pins")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
