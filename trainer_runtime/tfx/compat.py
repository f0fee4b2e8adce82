"""The pipeline and the image agree on the runtime: what is compiled in, and the check at run time.

The preferred wiring (``custom_executor_spec=ExecutorClassSpec(TrackedExecutor)``) imports
trainer_runtime where the pipeline is compiled, and the image runs its own copy. When the two
versions differ, the Trainer's ``custom_config["trainer_runtime"]`` keys and the executor wiring
may not mean the same thing to both. ``runtime_config()`` builds that section at compile time and
records the compiling version (``compiled_with``); ``TrackedExecutor.Do`` calls
``warn_if_compiled_with_other_version`` so a mismatch is one WARNING naming both versions and the fix.

Light to import: no tfx, no tensorflow.
"""
from __future__ import annotations

import difflib
import logging
from typing import Any

from trainer_runtime import __version__
from trainer_runtime.core.config import CUSTOM_CONFIG_KEY, FIELD_BY_NAME, FORBIDDEN_KEYS, RuntimeConfig, validate_tracking_uri
from trainer_runtime.core.errors import ConfigError

log = logging.getLogger(__name__)

COMPILED_WITH = "compiled_with"


def runtime_config(**values: Any) -> dict[str, Any]:
    """The ``custom_config["trainer_runtime"]`` section, checked now and stamped with this version.

    Use it where the pipeline is compiled::

        custom_config={"trainer_runtime": runtime_config(tracking_uri="https://mlflow-….run.app")}

    Args:
        values: any key of the configuration reference (docs/configuration.md).

    Returns:
        ``values`` plus ``compiled_with``: this trainer_runtime's version, which the image compares
        with its own at run time.

    Raises:
        ConfigError: an unknown key, a secret (which would sit in the pipeline spec in clear text),
            or a value the runtime would refuse; the same checks the image makes, made at compile time.
    """
    for key, value in values.items():
        if key in FORBIDDEN_KEYS:
            raise ConfigError(f"runtime_config({key}=...) would put a secret into the pipeline spec in clear text",
                              hint=f"set {FORBIDDEN_KEYS[key]} in the container's environment instead")
        if key == COMPILED_WITH:
            raise ConfigError("runtime_config() sets compiled_with itself", hint="drop compiled_with=...")
        field = FIELD_BY_NAME.get(key)
        if field is None:
            close = difflib.get_close_matches(key, list(FIELD_BY_NAME), n=1)
            raise ConfigError(f"unknown runtime_config key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""),
                              hint=f"valid keys: {', '.join(k for k in FIELD_BY_NAME if k != COMPILED_WITH)}")
        try:
            field.parse(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"runtime_config {key}={value!r} is invalid: {exc}",
                              hint=f"example: {key}={field.example}") from None
    if values.get("tracking_uri") is not None:
        validate_tracking_uri(str(values["tracking_uri"]))
    return {**values, COMPILED_WITH: __version__}


def version_mismatch(config: RuntimeConfig) -> str | None:
    """What to tell the user when the pipeline was compiled against another trainer_runtime, else None."""
    compiled = config.compiled_with
    if not compiled or compiled == __version__:
        return None
    image = f" (image {config.image_version})" if config.image_version else ""
    return (f"this pipeline was compiled with trainer_runtime {compiled}, but the image runs trainer_runtime "
            f"{__version__}{image}: its custom_config[{CUSTOM_CONFIG_KEY!r}] and executor wiring may not mean "
            f"the same to both. Fix: install trainer_runtime {__version__} where you compile "
            f'(pip install "git+https://github.com/OWNER/trainer-runtime@v{__version__}", or the wheel its '
            f"release built) and recompile, or run the image built for {compiled}")


def warn_if_compiled_with_other_version(config: RuntimeConfig) -> None:
    """Log one WARNING when ``config.compiled_with`` differs from this trainer_runtime's version."""
    message = version_mismatch(config)
    if message:
        log.warning("%s", message)
