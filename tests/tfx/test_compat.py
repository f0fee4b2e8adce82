"""The pipeline and the image agree on trainer_runtime: runtime_config() at compile time, the
check at run time (unit tests, then a Vertex replay of a pipeline compiled with another version)."""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from trainer_runtime import __version__
from trainer_runtime.core.config import load_config
from trainer_runtime.core.errors import ConfigError
from trainer_runtime.tfx import runtime_config
from trainer_runtime.tfx.compat import version_mismatch, warn_if_compiled_with_other_version

REPO = Path(__file__).resolve().parents[2]
URI = "https://mlflow-abc123-uc.a.run.app"


def test_the_wheel_and_the_image_carry_one_version():
    """The release's wheel is named from pyproject; the image reports trainer_runtime.__version__."""
    pyproject = re.search(r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    assert pyproject == __version__


def test_runtime_config_stamps_the_version_and_loads_at_run_time():
    section = runtime_config(tracking_uri=URI, experiment_name="recommender", log_every_n_steps=100)
    assert section == {"tracking_uri": URI, "experiment_name": "recommender", "log_every_n_steps": 100,
                       "compiled_with": __version__}
    json.dumps(section)  # custom_config goes into the pipeline spec as JSON
    config = load_config({}, {"trainer_runtime": section})
    assert config.compiled_with == __version__ and config.sources["compiled_with"] == "custom_config"


@pytest.mark.parametrize("kwargs, message", [
    ({"tracking_url": URI}, "unknown runtime_config key 'tracking_url' (did you mean 'tracking_uri'?)"),
    ({"tracking_token": "s3cret"}, "would put a secret into the pipeline spec"),
    ({"preflight_timeout": "soon"}, "preflight_timeout='soon' is invalid"),
    ({"tracking_uri": "mlflow.internal"}, "malformed tracking URI"),
    ({"compiled_with": "0.0.1"}, "sets compiled_with itself"),
])
def test_runtime_config_fails_at_compile_time(kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        runtime_config(**kwargs)


def _config(compiled_with, image_version=None):
    env = {"TRAINER_RUNTIME_IMAGE_VERSION": image_version} if image_version else {}
    custom = {"trainer_runtime": {"tracking_uri": URI, **({"compiled_with": compiled_with} if compiled_with else {})}}
    return load_config(env, custom)


def _warnings(caplog):
    return [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "trainer_runtime.tfx.compat"]


@pytest.mark.parametrize("compiled_with", [__version__, None])
def test_same_or_unknown_version_is_silent(compiled_with, caplog):
    caplog.set_level(logging.INFO)
    warn_if_compiled_with_other_version(_config(compiled_with))
    assert _warnings(caplog) == []


def test_another_version_is_one_warning_with_both_versions_and_the_fix(caplog):
    warn_if_compiled_with_other_version(_config("0.0.1", image_version="v9.9.9"))
    [record] = _warnings(caplog)
    text = record.getMessage()
    assert f"compiled with trainer_runtime 0.0.1, but the image runs trainer_runtime {__version__} (image v9.9.9)" in text
    assert f'pip install "git+https://github.com/OWNER/trainer-runtime@v{__version__}"' in text
    assert "recompile" in text


@pytest.mark.slow
def test_vertex_replay_of_a_pipeline_compiled_with_another_version(mlflow_server, interactions, tmp_path,
                                                                   monkeypatch):
    """The user guide's preferred pipeline, its compiled_with changed as an older trainer_runtime would
    have written it: the Trainer still trains, and says once, at WARNING, what to fix."""
    from tests.harness.vertex_local import LocalVertex
    from tests.tfx.test_user_guide import EXECUTOR, ONE_MACHINE, _assert_vertex_run, _env, compile_snippet

    spec, experiment = compile_snippet((EXECUTOR, ONE_MACHINE), tmp_path, interactions, mlflow_server.url,
                                       monkeypatch)
    constant = spec["root"]["dag"]["tasks"]["Trainer"]["inputs"]["parameters"]["custom_config"]["runtimeValue"][
        "constantValue"]
    custom = json.loads(constant["stringValue"])
    assert custom["trainer_runtime"]["compiled_with"] == __version__
    custom["trainer_runtime"]["compiled_with"] = "0.0.1"
    constant["stringValue"] = json.dumps(custom)

    vertex = LocalVertex(spec, tmp_path / "vertex-root")
    gen = vertex.run("CsvExampleGen", _env())
    assert gen.returncode == 0, gen.stderr[-4000:]
    trainer = vertex.run("Trainer", _env())
    _assert_vertex_run(mlflow_server.url, experiment, trainer)
    lines = [line for line in trainer.stderr.splitlines() if "compiled with trainer_runtime" in line]
    assert len(lines) == 1, trainer.stderr[-4000:]
    # absl's format here ("W1125 12:00:00.000 ... compat.py:83] ..."), or a WARNING level in text/JSON logs
    assert re.match(r"W\d{4} ", lines[0]) or "WARNING" in lines[0], lines[0]
    assert "0.0.1" in lines[0] and __version__ in lines[0] and "Fix:" in lines[0]


def test_version_mismatch_is_none_without_a_record():
    assert version_mismatch(_config(None)) is None
