from __future__ import annotations

import pytest

from trainer_runtime.core.config import FIELDS, load_config
from trainer_runtime.core.errors import ConfigError

URI = "https://mlflow-abc-uc.a.run.app"


def test_precedence_flags_over_custom_config_over_env_over_defaults():
    env = {"MLFLOW_TRACKING_URI": "http://env:5000", "MLFLOW_EXPERIMENT_NAME": "from-env",
           "TRAINER_RUNTIME_RUN_NAME": "env-run", "TRAINER_RUNTIME_PREFLIGHT_TIMEOUT": "12"}
    custom = {"trainer_runtime": {"experiment_name": "from-custom", "run_name": "custom-run"},
              "other_key": 1}
    flags = {"run_name": "flag-run", "experiment_name": None}
    cfg = load_config(env, custom, flags)
    assert cfg.tracking_uri == "http://env:5000"
    assert cfg.experiment_name == "from-custom"
    assert cfg.run_name == "flag-run"
    assert cfg.preflight_timeout == 12.0
    assert cfg.request_timeout == 30.0
    assert cfg.sources["run_name"] == "flag --run-name"
    assert cfg.sources["experiment_name"] == "custom_config"
    assert cfg.sources["preflight_timeout"] == "env TRAINER_RUNTIME_PREFLIGHT_TIMEOUT"
    assert cfg.sources["request_timeout"] == "default"


def test_config_is_frozen():
    cfg = load_config({"MLFLOW_TRACKING_URI": URI})
    with pytest.raises(AttributeError):
        cfg.tracking_uri = "http://other"  # type: ignore[misc]


@pytest.mark.parametrize("env,custom,flags,match", [
    ({"MLFLOW_TRACKING_URI": URI, "TRAINER_RUNTIME_PREFLIGHT_TIMOUT": "5"}, None, None,
     "TRAINER_RUNTIME_PREFLIGHT_TIMEOUT"),
    ({"MLFLOW_TRACKING_URI": URI}, {"trainer_runtime": {"experiment": "x"}}, None, "experiment_name"),
    ({"MLFLOW_TRACKING_URI": URI}, None, {"bogus": "1"}, "unknown flag key 'bogus'"),
])
def test_unknown_keys_are_errors_with_a_suggestion(env, custom, flags, match):
    with pytest.raises(ConfigError, match=match):
        load_config(env, custom, flags)


def test_missing_uri_shows_the_correct_form():
    with pytest.raises(ConfigError) as info:
        load_config({})
    assert "no MLflow tracking URI" in info.value.message
    assert "MLFLOW_TRACKING_URI=https://" in info.value.hint


@pytest.mark.parametrize("uri", ["mlflow.example.com", "ftp://host/x", "http://", "https://host:99999",
                                 "https://host/?token=abc", "not a url"])
def test_malformed_uri_shows_the_correct_form(uri):
    with pytest.raises(ConfigError) as info:
        load_config({"MLFLOW_TRACKING_URI": uri})
    assert "e.g. https://" in info.value.hint


def test_credentials_in_uri_are_refused_without_echoing_them():
    with pytest.raises(ConfigError) as info:
        load_config({"MLFLOW_TRACKING_URI": "https://bob:hunter22@host"})
    assert "hunter22" not in str(info.value)
    assert "MLFLOW_TRACKING_PASSWORD" in info.value.hint


def test_secrets_are_refused_in_custom_config():
    with pytest.raises(ConfigError) as info:
        load_config({"MLFLOW_TRACKING_URI": URI}, {"trainer_runtime": {"tracking_token": "s3cret-value"}})
    assert "MLFLOW_TRACKING_TOKEN" in info.value.hint
    assert "s3cret-value" not in str(info.value)


def test_bad_values_name_the_field_and_an_example():
    with pytest.raises(ConfigError, match="preflight_timeout from env"):
        load_config({"MLFLOW_TRACKING_URI": URI, "TRAINER_RUNTIME_PREFLIGHT_TIMEOUT": "soon"})
    with pytest.raises(ConfigError, match="auth from custom_config"):
        load_config({"MLFLOW_TRACKING_URI": URI}, {"trainer_runtime": {"auth": "iam"}})


def test_mlflow_credentials_are_recorded_only_as_presence():
    cfg = load_config({"MLFLOW_TRACKING_URI": URI, "MLFLOW_TRACKING_TOKEN": "tok-123456"})
    assert cfg.mlflow_credentials == "token"
    assert "tok-123456" not in repr(cfg)
    with pytest.raises(ConfigError, match="both a username and a password"):
        load_config({"MLFLOW_TRACKING_URI": URI, "MLFLOW_TRACKING_USERNAME": "bob"})
    with pytest.raises(ConfigError, match="auth=mlflow"):
        load_config({"MLFLOW_TRACKING_URI": URI, "TRAINER_RUNTIME_AUTH": "mlflow"})


def test_custom_config_section_must_be_a_dict():
    with pytest.raises(ConfigError, match="must be a dict"):
        load_config({"MLFLOW_TRACKING_URI": URI}, {"trainer_runtime": "https://x"})
