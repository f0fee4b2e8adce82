"""Generate the reference tables in the docs from the code, so the two cannot drift.

`make docs` rewrites the parts between the markers: the config table in
docs/configuration.md (from config.FIELDS), the exit-code tables in README.md
(from errors.EXIT_CODES and command_exits.COMMAND_EXIT_CODES), the README's package layout (from the docstrings of
trainer_runtime's packages and modules) and its status-field tables (from status.contract); and it writes the
status files' JSON Schemas into docs/schemas/ (``contract.schema``). A test fails when any is stale.
"""
from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

from trainer_runtime.core.config import CUSTOM_CONFIG_KEY, FIELDS
from trainer_runtime.core.command_exits import COMMAND_EXIT_CODES
from trainer_runtime.core.errors import EXIT_CODES
from trainer_runtime.status import contract

TABLES = {
    "CONFIG": "docs/configuration.md",
    "EXIT CODES": "README.md",
    "COMMAND EXIT CODES": "README.md",
    "LAYOUT": "README.md",
    "STATUS FIELDS": "README.md",
    "REPLICA STATUS FIELDS": "README.md",
}
#: each published schema's file -> its document (a key of contract.DOCUMENTS)
SCHEMAS = {f"docs/schemas/{name}.schema.json": name for name in contract.DOCUMENTS}
PACKAGE = Path(__file__).resolve().parents[1] / "trainer_runtime"
#: the subpackages in the order they build on each other (each may import only those before it)
LAYERS = ("core", "status", "tracking", "training", "run", "commands", "tfx")


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


def render_command_exit_codes() -> str:
    rows = ["| command | exit code | meaning |", "|---|---|---|"]
    rows += [f"| `{command}` | {code} | {meaning} |" for command, codes in COMMAND_EXIT_CODES.items()
             for code, meaning in sorted(codes.items())]
    return "\n".join(rows)


def _field_rows(fields: tuple[contract.Field, ...]) -> list[str]:
    rows = ["| field | always there | meaning |", "|---|---|---|"]
    return rows + [f"| `{f.name}` | {'yes' if f.required else ''} | {f.meaning} |" for f in fields]


def render_status_fields() -> str:
    """The README's table of mlflow_status.json's fields, then the compatibility rules."""
    rules = [f"- {rule}" for rule in contract.compatibility_rules()]
    return "\n".join([*_field_rows(contract.DOCUMENTS["mlflow_status"].fields), "",
                      f"Compatibility (`schema_version` {contract.SCHEMA_VERSION}):", "", *rules])


def render_replica_status_fields() -> str:
    """The README's paragraph on a replica's status file: the fields it shares with the chief's, then its own."""
    chief = {f.name for f in contract.DOCUMENTS["mlflow_status"].fields}
    replica = contract.DOCUMENTS["mlflow_status.replica"]
    shared = [f"`{f.name}`" for f in replica.fields if f.name in chief and f.name != "stage"]
    own = tuple(f for f in replica.fields if f.name not in chief)
    stages = " | ".join(s for s in replica.stages or () if s in contract.TERMINAL)
    return "\n".join([
        "In a distributed training, every replica but the chief writes only",
        "`mlflow_status.<type>-<index>.json` (e.g. `mlflow_status.worker-1.json`) beside the",
        f"chief's ([docs/schemas/{replica.name}.schema.json](docs/schemas/{replica.name}.schema.json)): "
        f"`stage` (`training`, then `{stages}`),",
        f"{', '.join(shared)} as above (the run's fields null: the chief tracks the run), and:", "",
        *_field_rows(own)])


def render_schema(document: str) -> str:
    """A published schema, as docs/schemas/ holds it."""
    return json.dumps(contract.schema(document), indent=2, ensure_ascii=False) + "\n"


def docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text())) or ""


def first_sentence(text: str) -> str:
    flat = " ".join(text.split("\n\n")[0].split())
    return flat.split(". ")[0].rstrip(".") + "."


def render_layout(package: Path = PACKAGE) -> str:
    """The README's package layout: each subpackage's docstring (what it owns, what it may import),
    then each of its modules with the first sentence of its docstring."""
    lines = ["```", "trainer_runtime/"]
    for name in LAYERS:
        lines.append(f"  {name}/")
        for module in sorted(p for p in (package / name).glob("*.py") if p.name != "__init__.py"):
            lines.append(f"    {module.stem:<18} {first_sentence(docstring(module))}")
    top = sorted(p for p in package.glob("*.py") if p.name != "__init__.py")
    for module in top:
        lines.append(f"  {module.stem + '.py':<20} {first_sentence(docstring(module))}")
    lines.append("```")
    lines.append("")
    for name in LAYERS:
        text = " ".join(docstring(package / name / "__init__.py").split())
        lines.append(f"- **`{name}/`**: {text}")
    return "\n".join(lines)


def import_violations(package: Path = PACKAGE) -> list[str]:
    """Imports of a subpackage that its docstring's ``May import:`` line does not allow."""
    import re

    found = []
    for name in LAYERS:
        text = docstring(package / name / "__init__.py")
        allowed = re.search(r"May import: (.*)", text)
        names = set() if allowed is None or allowed.group(1).startswith("nothing") else {
            n.strip(" .") for n in allowed.group(1).split(",")}
        for module in sorted((package / name).glob("*.py")):
            for node in ast.walk(ast.parse(module.read_text())):
                targets = []
                if isinstance(node, ast.ImportFrom) and node.module:
                    targets = [node.module]
                elif isinstance(node, ast.Import):
                    targets = [a.name for a in node.names]
                for target in targets:
                    parts = target.split(".")
                    if parts[0] == "trainer_runtime" and len(parts) > 1 and parts[1] != name \
                            and parts[1] not in names:
                        found.append(f"{name}/{module.name} imports {target} (allowed: {sorted(names) or 'none'})")
    return found


RENDER = {"CONFIG": render_config_table, "EXIT CODES": render_exit_codes,
          "COMMAND EXIT CODES": render_command_exit_codes, "LAYOUT": render_layout,
          "STATUS FIELDS": render_status_fields, "REPLICA STATUS FIELDS": render_replica_status_fields}


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
    for rel, document in SCHEMAS.items():
        path = root / rel
        new = render_schema(document)
        if not path.exists() or path.read_text() != new:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(new)
            changed.append(rel)
    return changed


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    print("updated: " + (", ".join(update(root)) or "nothing"))
