"""Generate the configuration reference table in docs/configuration.md from config.FIELDS.

`make docs` rewrites the part between the markers; a test fails when it is stale.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .config import CUSTOM_CONFIG_KEY, FIELDS

BEGIN = "<!-- BEGIN GENERATED CONFIG TABLE (make docs) -->"
END = "<!-- END GENERATED CONFIG TABLE -->"


def render_table() -> str:
    rows = [f"| key (`custom_config[\"{CUSTOM_CONFIG_KEY}\"]`) | env var | flag | default | meaning |",
            "|---|---|---|---|---|"]
    for f in FIELDS:
        default = "—" if f.default is None else f"`{f.default}`"
        rows.append(f"| `{f.name}` | `{f.env}` | `{f.flag}` | {default} | {f.doc} |")
    return "\n".join(rows)


def update(path: Path) -> bool:
    text = path.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    new = text[:start] + "\n" + render_table() + "\n" + text[end:]
    if new != text:
        path.write_text(new)
    return new != text


if __name__ == "__main__":
    changed = update(Path(sys.argv[1]))
    print(("updated " if changed else "unchanged ") + sys.argv[1])
