"""The runtime's configuration: parsed once, from explicit sources, into a frozen object.

Precedence (highest first): CLI flags > TFX ``custom_config["trainer_runtime"]``
> environment variables > defaults. This is the one place it is decided; the
reference table in docs/configuration.md is generated from ``FIELDS``.

Secrets (``MLFLOW_TRACKING_TOKEN``, ``MLFLOW_TRACKING_PASSWORD``) are read by
MLflow itself from the environment; the config records only *that* they are
set, and refuses them in custom_config or flags, which end up in pipeline
specs and process listings in clear text.
"""
from __future__ import annotations

import difflib
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from trainer_runtime.core import envvars
from trainer_runtime.core.errors import ConfigError

CUSTOM_CONFIG_KEY = "trainer_runtime"

AUTH_MODES = ("auto", "google", "mlflow", "none")
LOG_FORMATS = ("auto", "json", "text")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class Field:
    name: str
    env: str
    parse: Callable[[Any], Any]
    default: Any
    doc: str
    example: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text
    return parse


def _number(kind: type, minimum: float) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a number")
        number = kind(value)
        if number < minimum:
            raise ValueError(f"must be >= {minimum}")
        return number
    return parse


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in _TRUE + _FALSE:
        raise ValueError(f"must be one of {', '.join(_TRUE + _FALSE)}")
    return text in _TRUE


FIELDS: tuple[Field, ...] = (
    Field("tracking_uri", envvars.MLFLOW_TRACKING_URI, _str, None,
          "MLflow server root URL (required). Cloud Run: the service URL.",
          "https://mlflow-abc123-uc.a.run.app"),
    Field("experiment_name", envvars.MLFLOW_EXPERIMENT_NAME, _str, None,
          "Experiment to log to; created if missing. Default: the TFX pipeline name, else `trainer-runtime`.",
          "recommender-retrieval"),
    Field("run_id", envvars.MLFLOW_RUN_ID, _str, None,
          "Attach to this existing run instead of creating one.", "4f1c0d2e9b8a4c7e8f6a5b4c3d2e1f0a"),
    Field("run_key", envvars.RUN_KEY, _str, None,
          "Names this training across retries: a retried task continues the run tagged with this key "
          "instead of creating another. Default: where it runs (Vertex pipeline job + task, else the "
          "CustomJob id, else the TFX pipeline run + component); `run_id` wins over it.",
          "vertex-pipeline/recommender-20261123120000/Trainer"),
    Field("run_name", envvars.RUN_NAME, _str, None,
          "Name of the created run. Default on a TFX Trainer: `<pipeline>-<component>-<UTC time>`.",
          "nightly-2026-11-23"),
    Field("auth", envvars.AUTH, _choice(*AUTH_MODES), "auto",
          "`google`: Google ID token (Cloud Run/IAP); `mlflow`: MLflow's token or basic auth from env; "
          "`none`; `auto`: mlflow if its credentials are set, none for plain-http loopback, else google.",
          "google"),
    Field("audience", envvars.AUDIENCE, _str, None,
          "ID-token audience. Default: the tracking URI's origin (right for Cloud Run); "
          "for IAP, the OAuth client ID.", "1234-abc.apps.googleusercontent.com"),
    Field("preflight_timeout", envvars.PREFLIGHT_TIMEOUT, _number(float, 1), 300.0,
          "Total seconds the preflight may take, retries included (covers a Cloud Run cold start).", "300"),
    Field("request_timeout", envvars.REQUEST_TIMEOUT, _number(float, 0.1), 30.0,
          "Seconds one HTTP request to the server may take.", "30"),
    Field("status_dir", envvars.STATUS_DIR, _str, None,
          "Where mlflow_status.json and mlflow_info.json go: a local dir or gs://bucket/prefix. "
          "Default: next to the Trainer's model_run output (`<model_run>-mlflow`); standalone: $AIP_MODEL_DIR, else the working dir.",
          "gs://my-bucket/runs/123"),
    Field("log_every_n_steps", envvars.LOG_EVERY_N_STEPS, _number(int, 0), 0,
          "Also log training metrics every N steps (0: per epoch only).", "100"),
    Field("log_format", envvars.LOG_FORMAT, _choice(*LOG_FORMATS), "auto",
          "`json` (Cloud Logging), `text`, or `auto`: json when running on GCP.", "json"),
    Field("beam_log_level", envvars.BEAM_LOG_LEVEL, _choice(*LOG_LEVELS), "warning",
          "Level of apache_beam's loggers; their INFO lines (dozens when TFX loads) are held back "
          "unless you ask for `info`.", "info"),
    Field("queue_size", envvars.QUEUE_SIZE, _number(int, 10), 10_000,
          "Entries (one per epoch or logged step) queued in memory for the spool writer; only a stuck "
          "local disk fills it, and then new entries are dropped and counted (`rejected.queue_full`).",
          "10000"),
    Field("flush_timeout", envvars.FLUSH_TIMEOUT, _number(float, 0), 60.0,
          "The close budget of a run that ended on its own: seconds for the pending points, closing the "
          "MLflow run and the final status together. What is not sent by then stays in the spool, "
          "uploaded beside the status for `trainer-runtime replay`.", "60"),
    Field("sigterm_grace", envvars.SIGTERM_GRACE, _number(float, 1), 25.0,
          "Seconds from SIGTERM/SIGINT to the process exit (Vertex kills a task ~30 s after "
          "SIGTERM). The close gets all but a third of it (at most 8 s), kept for the process to exit.",
          "25"),
    Field("send_timeout", envvars.SEND_TIMEOUT, _number(float, 0.1), 10.0,
          "Seconds one logging request may take (tried once; the runtime's own backoff retries it, "
          "never MLflow's hidden urllib3 retries).", "10"),
    Field("heartbeat_interval", envvars.HEARTBEAT_INTERVAL, _number(float, 1), 30.0,
          "Seconds between progress writes to the status during training (epoch, step, pending "
          "points, heartbeat_at), so a killed trainer shows as a stale `training`.", "30"),
    Field("spool_dir", envvars.SPOOL_DIR, _str, None,
          "Local directory of the run's spool (every accepted point, before it is sent). "
          "Default: `$TMPDIR/trainer-runtime/spool-<run_id>`.", "/tmp/spool"),
    Field("spool_memory_mb", envvars.SPOOL_MEMORY_MB, _number(float, 1), 64.0,
          "RAM the pending points may take (MB); past it they wait on disk in the spool and are read "
          "back in order, so an outage of any length cannot run the trainer out of memory.", "64"),
    Field("spool_ship_interval", envvars.SPOOL_SHIP_INTERVAL, _number(float, 0), 60.0,
          "Seconds between uploads of the spool's unsent part beside the status while the server is "
          "not taking it (a SIGKILL, OOM or lost node then loses at most this much); 0: only at the "
          "close. Nothing is uploaded while everything is on the server.", "60"),
    Field("artifact_max_mb", envvars.ARTIFACT_MAX_MB, _number(float, 0), 2048.0,
          "Largest file (MB) user code may log as an artifact through MLflow's API while the runtime "
          "routes it: each is copied into the spool at the call and uploaded by the sender. A larger "
          "file is not logged, counted as `rejected.artifact_too_large` and warned about.", "2048"),
    Field("route_mlflow", envvars.ROUTE_MLFLOW, _bool, True,
          "Route MLflow's own API in your code (`mlflow.log_*`, `MlflowClient()`, autolog) through the "
          "run's spool and bounded sender. Off: those calls go to the server with MLflow's own retries.",
          "false"),
    Field("record_model", envvars.RECORD_MODEL, _bool, True,
          "After a successful Trainer: the SavedModel and model_run URIs (by reference, no copy) as "
          "`model/model_reference.json` and the serving signatures as `model/signature.json` on the run.",
          "false"),
    Field("register_model_name", envvars.REGISTER_MODEL_NAME, _str, None,
          "Register the SavedModel as a new version of this Model Registry model (source: its URI), "
          "tagged with the run, the pipeline run and the Vertex job. Default: no registration.",
          "recommender-retrieval"),
    Field("model_record_timeout", envvars.MODEL_RECORD_TIMEOUT, _number(float, 1), 30.0,
          "Seconds recording the model (artifacts and registry version) may take in all; after that, "
          "a warning and the status say so, and the training's outcome is unchanged.", "30"),
    Field("log_datasets", envvars.LOG_DATASETS, _bool, True,
          "The Trainer's inputs (Examples, Transform graph, Schema, base model, hyperparameters) as "
          "MLflow dataset inputs: URI, splits, TFX artifact id.", "false"),
    Field("system_metrics_interval", envvars.SYSTEM_METRICS_INTERVAL, _number(float, 0), 10.0,
          "Seconds between samples of CPU, memory, disk and network (`system/*` metrics, MLflow's "
          "names); 0: off.", "10"),
    Field("link_tags", envvars.LINK_TAGS, _bool, True,
          "Tags linking the run back: the Vertex pipeline run's console URL, the TensorBoard log dir "
          "under model_run, the image digest.", "false"),
    Field("image_digest", envvars.IMAGE_DIGEST, _str, None,
          "The image's digest, when whoever launches it knows it (a container cannot learn its own); "
          "recorded as a tag.", "sha256:4f1c…"),
    Field("run_fn", envvars.RUN_FN, _str, None,
          "Your run_fn (`pkg.module.fn`), when the Trainer's own run_fn is "
          "`trainer_runtime.tfx.run_fn.run_fn`.", "my_pkg.model.run_fn"),
    Field("image_version", envvars.IMAGE_VERSION, _str, None,
          "Set by the image build; recorded as a tag.", "1.16.0-tr0.1.0"),
    Field("compiled_with", envvars.COMPILED_WITH, _str, None,
          "The trainer_runtime version the pipeline was compiled with; `trainer_runtime.tfx.runtime_config()` "
          "sets it. A different version in the image logs a warning.", "0.1.0"),
    Field("track_trials", envvars.TRACK_TRIALS, _bool, True,
          "On a Tuner (`TrackedTunerExecutor`): each KerasTuner trial as a nested MLflow run (its `hp.*` "
          "params, per-epoch metrics, score). Off: only the search's own run, with the best "
          "hyperparameters and each trial's score.", "false"),
)
FIELD_BY_NAME = {f.name: f for f in FIELDS}
FIELD_BY_ENV = {f.env: f for f in FIELDS}
FORBIDDEN_KEYS = {
    "tracking_token": envvars.MLFLOW_TRACKING_TOKEN,
    "tracking_password": envvars.MLFLOW_TRACKING_PASSWORD,
    "tracking_username": envvars.MLFLOW_TRACKING_USERNAME,
}


#: settings a RuntimeConfig cannot be without (``load_config`` refuses their FIELDS default)
_REQUIRED = ("tracking_uri",)


def _defaults_from_fields(cls: type) -> type:
    """Give each setting of ``cls`` the default ``FIELDS`` declares, before ``dataclass`` reads them."""
    for f in FIELDS:
        if f.name in vars(cls):
            raise TypeError(f"{cls.__name__}.{f.name} restates a default; FIELDS declares it")
        if f.name not in _REQUIRED:
            setattr(cls, f.name, f.default)
    return cls


@dataclass(frozen=True)
@_defaults_from_fields
class RuntimeConfig:
    """Every setting of ``FIELDS``, typed; their defaults are the ones ``FIELDS`` declares."""

    tracking_uri: str
    experiment_name: str | None
    run_id: str | None
    run_key: str | None
    run_name: str | None
    auth: str
    audience: str | None
    preflight_timeout: float
    request_timeout: float
    status_dir: str | None
    log_every_n_steps: int
    log_format: str
    beam_log_level: str
    queue_size: int
    flush_timeout: float
    sigterm_grace: float
    send_timeout: float
    heartbeat_interval: float
    spool_dir: str | None
    spool_memory_mb: float
    spool_ship_interval: float
    artifact_max_mb: float
    route_mlflow: bool
    record_model: bool
    register_model_name: str | None
    model_record_timeout: float
    log_datasets: bool
    system_metrics_interval: float
    link_tags: bool
    image_digest: str | None
    run_fn: str | None
    image_version: str | None
    compiled_with: str | None
    track_trials: bool
    #: "token" or "basic" when MLflow's own credentials are in the environment.
    mlflow_credentials: str | None = None
    #: field name -> where its value came from ("flag --x", "custom_config", "env X", "default").
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def with_defaults(self, **values: Any) -> "RuntimeConfig":
        """Fill fields that are still unset (None) from context, e.g. the TFX pipeline name."""
        from dataclasses import replace

        updates = {k: v for k, v in values.items() if getattr(self, k) is None and v is not None}
        sources = dict(self.sources, **{k: "context" for k in updates})
        return replace(self, sources=sources, **updates)


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _custom_section(custom_config: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if not custom_config:
        return {}
    section = custom_config.get(CUSTOM_CONFIG_KEY)
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise ConfigError(
            f"custom_config[{CUSTOM_CONFIG_KEY!r}] must be a dict, got {type(section).__name__}",
            hint=f'custom_config={{"{CUSTOM_CONFIG_KEY}": {{"tracking_uri": "https://mlflow-….run.app", '
                 f'"experiment_name": "my-exp"}}}}')
    return section


def _check_keys(flags: Mapping[str, Any], section: Mapping[str, Any], env: Mapping[str, str]) -> None:
    names = list(FIELD_BY_NAME)
    for source, keys in (("flag", flags), (f"custom_config[{CUSTOM_CONFIG_KEY!r}]", section)):
        for key in keys:
            if key in FORBIDDEN_KEYS:
                raise ConfigError(
                    f"{source} key {key!r} would put a secret into the pipeline spec in clear text",
                    hint=f"set {FORBIDDEN_KEYS[key]} in the container's environment instead")
            if key not in FIELD_BY_NAME:
                raise ConfigError(f"unknown {source} key {key!r}{_suggest(key, names)}",
                                  hint=f"valid keys: {', '.join(names)}")
    envs = list(FIELD_BY_ENV)
    for key in env:
        if key.startswith(envvars.PREFIX) and key not in FIELD_BY_ENV:
            raise ConfigError(f"unknown environment variable {key}{_suggest(key, envs)}",
                              hint=f"variables with the {envvars.PREFIX} prefix are: {', '.join(e for e in envs if e.startswith(envvars.PREFIX))}")


def validate_tracking_uri(uri: str | None) -> str:
    """The URI, normalised (no trailing slash), or a ConfigError showing the correct form."""
    example = FIELD_BY_NAME["tracking_uri"].example
    if not uri:
        raise ConfigError("no MLflow tracking URI configured",
                          hint=f"set {envvars.MLFLOW_TRACKING_URI}={example}, or custom_config"
                               f'["{CUSTOM_CONFIG_KEY}"]["tracking_uri"], or --tracking-uri')
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise ConfigError(f"malformed tracking URI {uri!r}: {exc}",
                          hint=f"use the server's root URL, e.g. {example}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"malformed tracking URI {uri!r}: need an http(s) URL with a host",
                          hint=f"use the server's root URL, e.g. {example}")
    if parts.username or parts.password:
        raise ConfigError("the tracking URI carries credentials (user:password@host)",
                          hint=f"drop them from the URI and set {envvars.MLFLOW_TRACKING_USERNAME}/"
                               f"{envvars.MLFLOW_TRACKING_PASSWORD} in the environment")
    if parts.query or parts.fragment:
        raise ConfigError(f"the tracking URI must not have a query or fragment: {uri!r}",
                          hint=f"use the server's root URL, e.g. {example}")
    return uri.rstrip("/")


def is_loopback(uri: str) -> bool:
    host = urlsplit(uri).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_config(env: Mapping[str, str], custom_config: Mapping[str, Any] | None = None,
                flags: Mapping[str, Any] | None = None) -> RuntimeConfig:
    """Merge the three sources into a RuntimeConfig.

    Args:
        env: the process environment (pass ``os.environ``; tests pass a dict).
        custom_config: the TFX Trainer's custom_config (only its ``trainer_runtime`` key is read).
        flags: parsed CLI flags; ``None`` values count as "not given".

    Raises:
        ConfigError: unknown keys, secrets outside the env, bad values, a missing
            or malformed tracking URI. Each message shows the correct form.
    """
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    section = _custom_section(custom_config)
    _check_keys(flags, section, env)

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for f in FIELDS:
        for source, raw in ((f"flag {f.flag}", flags.get(f.name)),
                            ("custom_config", section.get(f.name)),
                            (f"env {f.env}", env.get(f.env))):
            if raw is not None and str(raw).strip() != "":
                try:
                    values[f.name] = f.parse(raw)
                except (TypeError, ValueError) as exc:
                    raise ConfigError(f"{f.name} from {source} is invalid ({raw!r}): {exc}",
                                      hint=f"example: {f.name}={f.example}") from None
                sources[f.name] = source
                break
        else:
            values[f.name] = f.default
            sources[f.name] = "default"

    values["tracking_uri"] = validate_tracking_uri(values["tracking_uri"])
    if env.get(envvars.MLFLOW_TRACKING_TOKEN):
        values["mlflow_credentials"] = "token"
    elif env.get(envvars.MLFLOW_TRACKING_USERNAME) or env.get(envvars.MLFLOW_TRACKING_PASSWORD):
        if not (env.get(envvars.MLFLOW_TRACKING_USERNAME) and env.get(envvars.MLFLOW_TRACKING_PASSWORD)):
            raise ConfigError("MLflow basic auth needs both a username and a password",
                              hint=f"set both {envvars.MLFLOW_TRACKING_USERNAME} and "
                                   f"{envvars.MLFLOW_TRACKING_PASSWORD}, or neither")
        values["mlflow_credentials"] = "basic"
    if values["auth"] == "mlflow" and not values.get("mlflow_credentials"):
        raise ConfigError("auth=mlflow but neither MLflow token nor basic-auth credentials are set",
                          hint=f"set {envvars.MLFLOW_TRACKING_TOKEN}, or "
                               f"{envvars.MLFLOW_TRACKING_USERNAME} and {envvars.MLFLOW_TRACKING_PASSWORD}")
    return RuntimeConfig(**values, sources=sources)
