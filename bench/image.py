"""The layer the runtime adds over the TFX base, from images already built here.

``make test``'s image tests build the stand-in base (``gcr.io/tfx-oss-public/tfx:1.16.0``)
and the product image (``trainer-runtime:test``) from the unchanged Dockerfile.
The bench never builds images; without an engine or those images it says why
nothing was measured.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

IMAGE = "trainer-runtime:test"
BASE = "gcr.io/tfx-oss-public/tfx:1.16.0"


def _docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)


def measure(image: str = IMAGE, base: str = BASE) -> dict[str, Any]:
    """Sizes in bytes and the layers above the base, or ``{"measured": False, "why": ...}``."""
    if shutil.which("docker") is None:
        return {"measured": False, "why": "not measured: no docker CLI on this machine"}
    try:
        if _docker("info").returncode != 0:
            return {"measured": False, "why": "not measured: no Docker engine running"}
    except subprocess.TimeoutExpired:
        return {"measured": False, "why": "not measured: the Docker engine did not answer"}
    inspected = {}
    for tag in (image, base):
        out = _docker("image", "inspect", tag)
        if out.returncode != 0:
            return {"measured": False,
                    "why": f"not measured: no image {tag} (make test's image tests build it; the bench does not)"}
        inspected[tag] = json.loads(out.stdout)[0]
    base_layers = set(inspected[base]["RootFS"]["Layers"])
    ours = [layer for layer in inspected[image]["RootFS"]["Layers"] if layer not in base_layers]
    history = _docker("history", "--no-trunc", "--human=false", "--format", "{{.Size}}\t{{.CreatedBy}}", image)
    steps = []
    for line in history.stdout.splitlines()[:max(len(ours), 0) + 8]:
        size, _, created_by = line.partition("\t")
        steps.append({"bytes": int(size or 0), "created_by": created_by[:160]})
    image_bytes, base_bytes = inspected[image]["Size"], inspected[base]["Size"]
    return {"measured": True, "image": image, "base": base, "image_bytes": image_bytes, "base_bytes": base_bytes,
            "added_bytes": image_bytes - base_bytes, "added_layers": len(ours), "history_top": steps,
            "image_id": inspected[image]["Id"], "image_created": inspected[image].get("Created")}
