"""Generate the reference tables in the docs from the code, so the two cannot drift.

`make docs` rewrites the parts between the markers: the config table in
docs/configuration.md (from config.FIELDS) and the exit-code table in README.md
(from errors.EXIT_CODES). A test fails when either is stale.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .config import CUSTOM_CONFIG_KEY, FIELDS
from .errors import EXIT_CODES

TABLES = {
    "CONFIG": "docs/configuration.md",
    "EXIT CODES": "README.md",
}


def markers(name: str) -> tuple[str, str]:
    return (f"<!-- BEGIN GENERATED {name} TABLE (make docs) -->", f"<!-- END GENERATED {name} TABLE -->")


def render_config_table() -> str:
    rows = [f"| key (`custom_config[\"{CUSTOM_CONFIG_KEY}\"]`) | env var | flag | default | meaning |",
            "|---|---|---|---|---|"]
    for f in FIELDS:
        default = "—" if f.default is None else f"`{f.default}`"
        rows.append(f"| `{f.name}` | `{f.env}` | `{f.flag}` | {default} | {f.doc} |")
    return "\n".join(rows)


def render_exit_codes() -> str:
    rows = ["| exit code | error class | meaning |", "|---|---|---|"]
    rows += [f"| {code} | `{cls}` | {meaning} |" for code, (cls, meaning) in sorted(EXIT_CODES.items())]
    return "\n".join(rows)


RENDER = {"CONFIG": render_config_table, "EXIT CODES": render_exit_codes}


def update(root: Path) -> list[str]:
    changed = []
    for name, rel in TABLES.items():
        path = root / rel
        text = path.read_text()
        begin, end = markers(name)
        start, stop = text.index(begin) + len(begin), text.index(end)
        new = text[:start] + "\n" + RENDER[name]() + "\n" + text[stop:]
        if new != text:
            path.write_text(new)
            changed.append(rel)
    return changed


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    print("updated: " + (", ".join(update(root)) or "nothing"))
