"""Render cloudbuild.yaml the way Cloud Build would for a given build, so its steps can be checked and run here.

No Cloud Build is reachable from here. This applies the documented substitution rules (and those of
GoogleCloudPlatform/cloud-build-local's ``subst`` package, the open reference implementation):

- Built-in substitutions (``PROJECT_ID``, ``TAG_NAME``, ...) that a build does not have are empty
  strings: a manual run or branch build has an empty ``TAG_NAME``, a ``gcloud builds submit`` of a
  directory has no ``COMMIT_SHA``/``SHORT_SHA``/``REPO_FULL_NAME`` either.
- User substitutions (``_NAME``) come from the file's ``substitutions:``, overridden by the trigger's or
  ``--substitutions``. With ``options.dynamicSubstitutions`` (always on for triggers) their *values* are
  evaluated bash-style: ``$VAR``, ``${VAR}`` and ``${VAR:-default}`` (defaults may nest).
- In the build's fields (steps' name/args/env/dir/entrypoint, images, tags, artifacts, logsBucket)
  ``$$`` is a literal ``$`` and ``$VAR``/``${VAR}`` is replaced. A key that is neither a built-in nor a
  defined user substitution fails the build, and so does (unless ``substitutionOption: ALLOW_LOOSE``)
  a user substitution the fields never use.

Stricter than Cloud Build, on purpose: any other ``$`` in a field (a bash variable not escaped as
``$$``, or ``${VAR:-x}`` written in a step instead of in a substitution value) is an error here,
because Cloud Build's handling of those differs between static and dynamic substitution.
"""
from __future__ import annotations

import copy
import re
from typing import Any, Mapping

BUILTINS = ("PROJECT_ID", "BUILD_ID", "PROJECT_NUMBER", "LOCATION", "TRIGGER_NAME", "COMMIT_SHA", "REVISION_ID",
            "SHORT_SHA", "REPO_NAME", "REPO_FULL_NAME", "BRANCH_NAME", "TAG_NAME", "REF_NAME",
            "TRIGGER_BUILD_CONFIG_PATH", "SERVICE_ACCOUNT_EMAIL", "SERVICE_ACCOUNT")
USER_KEY = re.compile(r"_[A-Z0-9_]+")
# In fields: $$, ${KEY} or $KEY (cloud-build-local's validSubstKeyRE), or a stray $ we refuse.
FIELD_TOKEN = re.compile(r"\$\$|\$\{([A-Z_][A-Z0-9_]*)\}|\$([A-Z_][A-Z0-9_]*)|\$")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class RenderError(ValueError):
    """The build config would be rejected (or is outside what this renderer models)."""


def _scenario_values(builtins: Mapping[str, str]) -> dict[str, str]:
    unknown = set(builtins) - set(BUILTINS)
    if unknown:
        raise RenderError(f"not built-in substitutions: {sorted(unknown)}")
    values = {key: "" for key in BUILTINS}
    values.update(builtins)
    return values


class _Evaluator:
    """Bash-style evaluation of substitution values (dynamic substitutions)."""

    def __init__(self, raw: Mapping[str, str]):
        self.raw = raw
        self.done: dict[str, str] = {}
        self.active: list[str] = []

    def value(self, key: str) -> str:
        if key in self.done:
            return self.done[key]
        if key not in self.raw:
            return ""  # as bash (and Cloud Build) evaluate an undefined variable
        if key in self.active:
            raise RenderError(f"cycle in evaluating substitutions: {' -> '.join(self.active + [key])}")
        self.active.append(key)
        try:
            text, end = self.expand(self.raw[key], 0, stop_at_brace=False)
        finally:
            self.active.pop()
        self.done[key] = text
        return text

    def expand(self, text: str, i: int, stop_at_brace: bool) -> tuple[str, int]:
        out = []
        while i < len(text):
            char = text[i]
            if char == "}" and stop_at_brace:
                return "".join(out), i
            if char != "$":
                out.append(char)
                i += 1
                continue
            if text.startswith("$$", i):
                out.append("$")
                i += 2
            elif text.startswith("${", i):
                name = NAME.match(text, i + 2)
                if not name:
                    raise RenderError(f"bad expansion at {text[i:]!r}")
                j = name.end()
                if text.startswith("}", j):
                    out.append(self.value(name.group()))
                    i = j + 1
                elif text.startswith(":-", j):
                    default, k = self.expand(text, j + 2, stop_at_brace=True)
                    if not text.startswith("}", k):
                        raise RenderError(f"unclosed ${{ in {text!r}")
                    out.append(self.value(name.group()) or default)
                    i = k + 1
                else:
                    raise RenderError(f"expansion {text[i:]!r} is not modelled here (only ${{VAR}} and "
                                      "${VAR:-default})")
            else:
                name = NAME.match(text, i + 1)
                if not name:
                    raise RenderError(f"a lone $ in {text!r}: write $$ for a literal $")
                out.append(self.value(name.group()))
                i = name.end()
        if stop_at_brace:
            raise RenderError(f"unclosed ${{ in {text!r}")
        return "".join(out), i


def substitution_values(config: Mapping[str, Any], builtins: Mapping[str, str],
                        user: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every substitution's final value for one build: built-ins, then user ones evaluated."""
    user_values = dict(config.get("substitutions") or {})
    user_values.update(user or {})
    for key in user_values:
        if not USER_KEY.fullmatch(key):
            raise RenderError(f"user-defined substitution {key!r} must match _[A-Z0-9_]+")
    raw: dict[str, str] = dict(_scenario_values(builtins))
    raw.update({k: str(v) for k, v in user_values.items()})
    if not (config.get("options") or {}).get("dynamicSubstitutions"):
        return raw
    evaluator = _Evaluator(raw)
    return {key: evaluator.value(key) for key in raw}


def _fields(config: dict) -> list[tuple[Any, Any]]:
    """(container, key) of every string field Cloud Build substitutes in."""
    spots: list[tuple[Any, Any]] = []

    def add_list(container: dict, key: str) -> None:
        for index in range(len(container.get(key) or [])):
            spots.append((container[key], index))

    for step in config.get("steps") or []:
        for key in ("name", "dir", "entrypoint"):
            if key in step:
                spots.append((step, key))
        add_list(step, "args")
        add_list(step, "env")
    add_list(config, "images")
    add_list(config, "tags")
    if "logsBucket" in config:
        spots.append((config, "logsBucket"))
    artifacts = config.get("artifacts") or {}
    add_list(artifacts, "images")
    objects = artifacts.get("objects") or {}
    if "location" in objects:
        spots.append((objects, "location"))
    add_list(objects, "paths")
    return spots


def render(config: Mapping[str, Any], builtins: Mapping[str, str],
           user: Mapping[str, str] | None = None) -> dict:
    """A copy of ``config`` with every substitution applied, as the build would run it.

    Raises:
        RenderError: where Cloud Build would reject the build (unknown keys, unused user
            substitutions in strict mode), or a field has a ``$`` this renderer refuses.
    """
    values = substitution_values(config, builtins, user)
    rendered = copy.deepcopy(dict(config))
    used: set[str] = set()

    def apply(text: str) -> str:
        def one(match: re.Match) -> str:
            if match.group() == "$$":
                return "$"
            key = match.group(1) or match.group(2)
            if key is None:
                raise RenderError(f"a $ that is no substitution in {text!r}: escape it as $$ (bash variables), "
                                  "or move the expansion into a substitution value")
            if key not in values:
                raise RenderError(f'key in the template "{key}" is not a valid built-in substitution'
                                  if not key.startswith("_") else
                                  f'key in the template "{key}" is not matched in the substitution data')
            used.add(key)
            return values[key]
        return FIELD_TOKEN.sub(one, text)

    for container, key in _fields(rendered):
        container[key] = apply(str(container[key]))
    user_keys = {k for k in values if k.startswith("_")}
    loose = (config.get("options") or {}).get("substitutionOption") == "ALLOW_LOOSE"
    unused = sorted(user_keys - used)
    if unused and not loose:
        raise RenderError(f"key(s) {unused} in the substitution data are not matched in the template")
    return rendered


#: What a docker image reference may look like: registry/path:tag (tag per the docker CLI's rules).
DOCKER_REF = re.compile(r"(?P<repo>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)+)"
                        r":(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})")
