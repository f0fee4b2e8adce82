"""Environment variable names are spelled in one place: ``trainer_runtime/core/envvars.py``.

Everywhere else reads them through its constants, so a reader finds every variable
the runtime looks at in one file, and a rename cannot miss a reader.
"""
from __future__ import annotations

import ast
from pathlib import Path

from trainer_runtime.core import envvars

PACKAGE = Path(__file__).resolve().parents[2] / "trainer_runtime"
HOME = Path("core/envvars.py")

#: files that may still spell names (none: every name is a constant of core/envvars.py)
EXCLUDED: set[Path] = set()

#: expressions that hold an environment mapping: ``os.environ``, ``env``, ``self._env``, ``deps.env``
_ENV_NAMES = {"environ", "env", "_env"}
_READERS = {"get", "pop", "setdefault"}


def known_names() -> set[str]:
    """Every name envvars declares (its string constants and the names in its tuples)."""
    names: set[str] = set()
    for key, value in vars(envvars).items():
        if key.startswith("_"):
            continue
        if isinstance(value, str):
            names.add(value)
        elif isinstance(value, tuple):
            names.update(v for v in value if isinstance(v, str))
    return names


def _is_env(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id in _ENV_NAMES) or \
        (isinstance(node, ast.Attribute) and node.attr in _ENV_NAMES)


def _literal(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def spelled_names(source: str, known: set[str]) -> list[tuple[int, str]]:
    """``(line, name)`` for each environment name spelled as a literal in ``source``."""
    found: set[tuple[int, str]] = set()
    for node in ast.walk(ast.parse(source)):
        name = None
        if isinstance(node, ast.Constant) and _literal(node) in known:
            name = node.value
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in _READERS and _is_env(func.value):
                name = _literal(node.args[0])
            elif (isinstance(func, ast.Attribute) and func.attr == "getenv") or \
                    (isinstance(func, ast.Name) and func.id == "getenv"):
                name = _literal(node.args[0])
        elif isinstance(node, ast.Subscript) and _is_env(node.value):
            name = _literal(node.slice)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr == "update" and _is_env(node.func.value):
            found.update((node.lineno, kw.arg) for kw in node.keywords if kw.arg)
        if name is not None:
            found.add((node.lineno, name))
    return sorted(found)


def test_the_scan_finds_each_way_of_spelling_a_name():
    source = ('import os\nos.environ.get("A_VAR")\nenv["B_VAR"]\nself._env.get("C_VAR", "")\n'
              'os.getenv("D_VAR")\nos.environ.update(E_VAR="1")\nx = "MLFLOW_TRACKING_URI"\n'
              'env.get(envvars.AUDIENCE)\ny = "trainer_runtime.run_key"\n')
    assert spelled_names(source, known_names()) == [
        (2, "A_VAR"), (3, "B_VAR"), (4, "C_VAR"), (5, "D_VAR"), (6, "E_VAR"), (7, "MLFLOW_TRACKING_URI")]


def test_environment_names_are_spelled_only_in_envvars():
    known = known_names()
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative == HOME or relative in EXCLUDED:
            continue
        offenders += [f"trainer_runtime/{relative}:{line}: {name!r}"
                      for line, name in spelled_names(path.read_text(), known)]
    assert not offenders, ("environment names spelled outside core/envvars.py (add a constant there "
                           "and use it):\n" + "\n".join(offenders))


def test_exclusions_are_still_needed():
    """An excluded file that no longer spells a name should be scanned again."""
    known = known_names()
    clean = [str(p) for p in sorted(EXCLUDED) if not spelled_names((PACKAGE / p).read_text(), known)]
    assert not clean, f"drop these from EXCLUDED, they spell no environment name now: {clean}"
