"""The generated parts of the docs (config table, exit codes, package layout) are current, and the
package's import direction is what its packages' docstrings say."""
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
