"""The generated parts of the docs (config table, exit codes, package layout, status fields, the status
files' JSON Schemas in docs/schemas/) are current, and the package's import direction is what its packages'
docstrings say."""
from __future__ import annotations

from pathlib import Path

import pytest

from devtools import docs

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(docs.TABLES))
def test_generated_part_is_current(name):
    text = (ROOT / docs.TABLES[name]).read_text()
    begin, end = docs.markers(name)
    between = text[text.index(begin) + len(begin):text.index(end)]
    assert between == "\n" + docs.RENDER[name]() + "\n", f"{docs.TABLES[name]} is stale: run `make docs`"


@pytest.mark.parametrize("rel", sorted(docs.SCHEMAS))
def test_published_schema_is_current(rel):
    path = ROOT / rel
    assert path.exists(), f"{rel} is missing: run `make docs`"
    assert path.read_text() == docs.render_schema(docs.SCHEMAS[rel]), f"{rel} is stale: run `make docs`"


def test_make_docs_rewrites_a_stale_schema(tmp_path):
    for rel in docs.TABLES.values():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text((ROOT / rel).read_text())
    stale = tmp_path / "docs/schemas/mlflow_status.schema.json"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text((ROOT / "docs/schemas/mlflow_status.schema.json").read_text().replace('"const": 2', '"const": 1'))
    changed = docs.update(tmp_path)
    assert "docs/schemas/mlflow_status.schema.json" in changed and "docs/schemas/mlflow_info.schema.json" in changed
    assert stale.read_text() == docs.render_schema("mlflow_status")
    assert docs.update(tmp_path) == []


def test_the_layout_names_every_module():
    layout = (ROOT / "README.md").read_text()
    modules = [p for p in (ROOT / "trainer_runtime").rglob("*.py") if p.name != "__init__.py"]
    assert len(modules) > 40
    missing = [str(p.relative_to(ROOT)) for p in modules if f" {p.stem} " not in layout and f"{p.stem}.py" not in layout]
    assert missing == []
    for package in docs.LAYERS:
        assert f"**`{package}/`**" in layout


def test_every_package_says_what_it_may_import_and_keeps_to_it():
    for package in docs.LAYERS:
        assert "May import:" in docs.docstring(ROOT / "trainer_runtime" / package / "__init__.py"), package
    assert docs.import_violations() == []


def test_a_wrong_import_direction_is_reported(tmp_path):
    for name in docs.LAYERS:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f'"""{name}.\n\nMay import: nothing else of trainer_runtime.\n"""\n')
    (tmp_path / "core" / "bad.py").write_text('"""Bad."""\n\n\ndef f():\n    from trainer_runtime.run import session\n')
    assert docs.import_violations(tmp_path) == [
        "core/bad.py imports trainer_runtime.run (allowed: none)"]
