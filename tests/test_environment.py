"""The locked environment is the image's environment: checks that `pip check` alone misses."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LOCKED = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", re.M)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(path: Path) -> dict[str, str]:
    return {_norm(n): v for n, v in LOCKED.findall(path.read_text())}


def test_lock_pins_every_package_with_hashes():
    text = (REPO / "requirements.lock").read_text()
    entries = re.split(r"\n(?=[A-Za-z])", text.strip())
    entries = [e for e in entries if LOCKED.match(e)]
    assert len(entries) > 200
    missing = [e.split()[0] for e in entries if "--hash=sha256:" not in e]
    assert missing == []


def test_lock_keeps_the_base_image_pins():
    """Every package the base image pins is locked at exactly that version (see requirements.in)."""
    pins_path = Path(os.environ.get("TR_BASE_PINS", REPO.parent / "shared/base-images/tfx-1.16.0/pins.txt"))
    assert pins_path.exists(), f"base pins not found at {pins_path}; run through `make test`"
    pins = locked(pins_path)
    lock = locked(REPO / "requirements.lock")
    deviations = {n: (pins[n], lock[n]) for n in pins.keys() & lock.keys() if pins[n] != lock[n]}
    assert deviations == {}
    for must in ("pydantic", "typing-extensions", "protobuf", "tensorflow", "tf-keras", "apache-beam"):
        assert lock[must] == pins[must], must


def test_installed_env_equals_the_lock():
    # A fresh interpreter: once setuptools is imported in-process (TFX does), its _vendor dir is
    # on sys.path and its vendored dist-infos (packaging, wheel, ...) would shadow the real ones.
    code = ("import json; from importlib import metadata; "
            "print(json.dumps({d.metadata['Name']: d.version for d in metadata.distributions()}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    import json

    lock = locked(REPO / "requirements.lock")
    installed = {_norm(n): v for n, v in json.loads(out.stdout).items()}
    wrong = {n: (v, installed.get(n)) for n, v in lock.items() if installed.get(n) != v}
    assert wrong == {}
    assert "mlflow" not in installed, "full mlflow must never sit beside mlflow-skinny"


def test_pip_check_passes():
    uv = os.environ.get("TR_UV")
    cmd = [uv, "pip", "check", "--python", sys.executable] if uv else [sys.executable, "-m", "pip", "check"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_heavy_imports_work_under_legacy_keras():
    """What pip check cannot see: tfx.v1 (dill), the Vertex executor module (kfp), TFRS under tf-keras."""
    code = ("from tfx import v1\n"
            "import tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor\n"
            "import tensorflow as tf, tensorflow_recommenders, mlflow, pydantic\n"
            "import google.cloud.storage, google.auth\n"
            "print(tf.__version__, tf.keras.__name__, mlflow.__version__, pydantic.VERSION)\n")
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    tf_version, keras_module, mlflow_version, pydantic_version = result.stdout.split()[-4:]
    assert tf_version == "2.16.2"
    assert keras_module.startswith("tf_keras")
    assert mlflow_version == locked(REPO / "requirements.lock")["mlflow-skinny"]
    assert pydantic_version == "2.9.2"


#: What a TFX user module commonly imports beside tfx itself. The Dockerfile's smoke import must
#: import each of these too, so a break (like setuptools >= 81 dropping pkg_resources, which
#: TensorBoard's server and tensorflow_hub need) fails the image build, not a user's training job.
ECOSYSTEM_MODULES = ("pkg_resources", "tensorflow_transform", "tensorflow_model_analysis", "tensorboard.program",
                     "tensorboard.main", "tensorflow_recommenders", "keras_tuner", "tfx_bsl.public.tfxio")
LEGACY_KERAS = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, **LEGACY_KERAS), timeout=600)


def test_tf_ecosystem_modules_a_user_module_imports():
    """pip check passes without pkg_resources; only importing what users import finds that."""
    code = "".join(f"import {m}\n" for m in ECOSYSTEM_MODULES)
    # TensorBoard finds its plugins through pkg_resources entry points at run time, not at import.
    code += "from tensorboard import default\nprint('plugins', len(default.get_dynamic_plugins()))\n"
    result = _python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-2:] == ["plugins", "1"]
    # setuptools 80.9 turned this into a UserWarning that every import prints (see requirements.in).
    assert "UserWarning: pkg_resources is deprecated" not in result.stderr


def test_tensorflow_hub_gets_past_pkg_resources():
    """tensorflow_hub 0.15 (tfx 1.16 requires <0.16) needs pkg_resources, then tf.compat.v1.estimator,
    which TF 2.16 removed: it cannot import in the TFX 1.16 base image either (see the user guide).
    This proves our lock is not what stops it; when it imports, it belongs in ECOSYSTEM_MODULES."""
    result = _python("import tensorflow_hub")
    assert "pkg_resources" not in result.stderr, result.stderr[-3000:]
    if result.returncode == 0:
        pytest.fail("tensorflow_hub imports now: add it to ECOSYSTEM_MODULES, the Dockerfile's smoke import "
                    "and drop the user guide's note")
    assert "cannot import name 'estimator' from 'tensorflow.compat.v1'" in result.stderr, result.stderr[-3000:]


def test_dockerfile_smoke_import_covers_the_ecosystem_modules():
    dockerfile = (REPO / "Dockerfile").read_text()
    smoke = re.search(r'python -c "([^"]*\btrainer_runtime\b[^"]*)"', dockerfile)
    assert smoke, "the Dockerfile's smoke import (python -c \"...\") is gone"
    imported = set(re.findall(r"[\w.]+", smoke.group(1)))
    assert [m for m in ECOSYSTEM_MODULES if m not in imported] == []


def test_importing_the_package_pulls_in_nothing_heavy():
    # Namespace-package .pth files put bare 'google' and 'google.cloud' in
    # sys.modules at interpreter start, so compare against that baseline.
    code = ("import sys\n"
            "before = set(sys.modules)\n"
            "import trainer_runtime, trainer_runtime.commands.cli, trainer_runtime.tracking.auth\n"
            "new = set(sys.modules) - before\n"
            "heavy = sorted(m for m in new if m.split('.')[0] in ('tensorflow', 'mlflow', 'google', 'tfx',"
            " 'keras', 'tf_keras', 'requests'))\n"
            "print(heavy)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_make_lock_reproduces_the_lock(tmp_path):
    """Re-resolving (what `make lock` runs) gives requirements.lock byte for byte."""
    uv = os.environ.get("TR_UV")
    assert uv, "run through `make test` (TR_UV names the pinned uv)"
    pins = os.environ["TR_BASE_PINS"]
    out = tmp_path / "requirements.lock"
    # Same flags as LOCK_FLAGS in the Makefile; the -c path must read the same as there.
    result = subprocess.run([uv, "pip", "compile", "--python-version", "3.10", "--python-platform",
                             "x86_64-manylinux_2_28", "--generate-hashes", "--no-header", "--quiet",
                             "requirements.in", "-c", os.path.relpath(pins, REPO), "-o", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == (REPO / "requirements.lock").read_text()
