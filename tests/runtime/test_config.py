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


def test_runtime_config_and_fields_name_the_same_settings_with_the_same_defaults():
    from dataclasses import MISSING, fields

    from trainer_runtime.core.config import RuntimeConfig

    derived = {"mlflow_credentials", "sources"}  # computed by load_config, not settings
    attrs = {f.name: f for f in fields(RuntimeConfig) if f.name not in derived}
    assert set(attrs) == {f.name for f in FIELDS}
    required = {name for name, f in attrs.items() if f.default is MISSING}
    assert required == {"tracking_uri"}  # its FIELDS default, None, is refused by load_config
    disagree = {f.name: (attrs[f.name].default, f.default) for f in FIELDS
                if f.name not in required and (attrs[f.name].default != f.default
                                                or type(attrs[f.name].default) is not type(f.default))}
    assert not disagree, f"RuntimeConfig default vs FIELDS default: {disagree}"


def _table_rows(table: str) -> tuple[list[str], list[list[str]]]:
    """A markdown table's header cells and its rows' cells (no cell holds a ``|``)."""
    header, rule, *lines = table.splitlines()
    assert set(rule) <= set("|-: "), rule

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip().removeprefix("|").removesuffix("|").split("|")]

    return cells(header), [cells(line) for line in lines]


def test_the_config_table_gives_each_fields_env_var_flag_default_and_meaning():
    """docs/configuration.md's table (generated; tests/test_docs.py checks it is current) has one row per
    field, and that row names the field's env var and flag, says its meaning, and shows a default that
    the field's own parser reads back as the default."""
    from devtools import docs

    header, rows = _table_rows(docs.render_config_table())
    column = {name: header.index(name) for name in ("env var", "flag", "default", "meaning")}
    by_key = {}
    for cells in rows:
        assert len(cells) == len(header), cells
        by_key.setdefault(cells[0].strip("`"), []).append(cells)
    assert sorted(by_key) == sorted(f.name for f in FIELDS), "one row per field, no other"
    assert not {key: found for key, found in by_key.items() if len(found) > 1}, "a field with two rows"
    for f in FIELDS:
        [cells] = by_key[f.name]
        assert cells[column["env var"]] == f"`{f.env}`", (f.name, cells)
        assert cells[column["flag"]] == f"`{f.flag}`", (f.name, cells)
        assert cells[column["meaning"]] == f.doc, (f.name, cells)
        shown = cells[column["default"]]
        if f.default is None:
            assert shown == "—", (f.name, shown)
        else:
            assert shown.startswith("`") and shown.endswith("`"), (f.name, shown)
            parsed = f.parse(shown.strip("`"))
            assert parsed == f.default and type(parsed) is type(f.default), (f.name, shown, f.default)
