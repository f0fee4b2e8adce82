"""Install the MLflow callback into every ``Model.fit`` call, without user code changes.

While the context manager is active, ``fit`` of tf-keras (when
``TF_USE_LEGACY_KERAS`` is set, or already imported) and of Keras 3 (otherwise,
or already imported) gets our callback appended: once, even if the user passed
one of ours; MLflow's own ``MlflowCallback`` is removed, because it crashes
``fit`` under tf-keras and would log everything twice.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import logging
import os
import sys
from typing import Any, Iterator

from trainer_runtime.core import envvars
from trainer_runtime.training.keras_callback import MARKER, CallbackCore, make_callback

log = logging.getLogger(__name__)


def keras_modules(env: dict | None = None) -> list[Any]:
    env = env if env is not None else os.environ
    legacy = env.get(envvars.TF_USE_LEGACY_KERAS, "").lower() in ("1", "true", "yes")
    names = {"tf_keras" if legacy else "keras"}
    names |= {name for name in ("tf_keras", "keras") if name in sys.modules}
    modules = []
    for name in sorted(names):
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            log.debug("%s not importable; not hooking it", name)
    return modules


def _is_mlflow_callback(cb: Any) -> bool:
    return type(cb).__module__.startswith("mlflow.") and type(cb).__name__ == "MlflowCallback"


def with_callback(callbacks: Any, ours: Any) -> list[Any]:
    existing = list(callbacks or [])
    kept = []
    for cb in existing:
        if _is_mlflow_callback(cb):
            log.warning("removing mlflow's MlflowCallback from fit(): trainer-runtime already logs to "
                        "the same run (and MlflowCallback fails under tf-keras)")
            continue
        kept.append(cb)
    if not any(getattr(cb, MARKER, False) for cb in kept):
        kept.append(ours)
    return kept


@contextlib.contextmanager
def installed(core: CallbackCore, modules: list[Any] | None = None) -> Iterator[None]:
    modules = keras_modules() if modules is None else modules
    restore = []
    for module in modules:
        model_cls, base = module.Model, module.callbacks.Callback
        original = model_cls.__dict__.get("fit")
        inherited = model_cls.fit
        signature = inspect.signature(inherited)

        def fit(self, *args, _inherited=inherited, _signature=signature, _base=base, **kwargs):
            bound = _signature.bind(self, *args, **kwargs)
            bound.arguments["callbacks"] = with_callback(bound.arguments.get("callbacks"),
                                                         make_callback(_base, core))
            return _inherited(*bound.args, **bound.kwargs)

        functools.update_wrapper(fit, inherited)
        model_cls.fit = fit
        restore.append((model_cls, original))
        log.info("MLflow callback hooked into %s.Model.fit", module.__name__)
    try:
        yield
    finally:
        for model_cls, original in restore:
            if original is None:
                del model_cls.fit
            else:
                model_cls.fit = original
