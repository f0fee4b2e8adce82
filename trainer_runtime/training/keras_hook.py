"""Install the MLflow callback into every ``Model.fit`` call, without user code changes.

While the context manager is active, ``fit`` of tf-keras (when
``TF_USE_LEGACY_KERAS`` is set, or already imported) and of Keras 3 (otherwise,
or already imported), and of either one user code imports meanwhile, gets our
callback appended: once, even if the user passed one of ours; MLflow's own ``MlflowCallback`` is removed, because it crashes
``fit`` under tf-keras and would log everything twice.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.abc
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


#: the Keras packages a fit can come from: Keras 3 and tf-keras (both installed on TF 2.16+ bases)
KERAS_NAMES = ("keras", "tf_keras")


def _hook(module: Any, core: CallbackCore, restore: list) -> None:
    """Our callback into every ``module.Model.fit`` (undone by ``restore``)."""
    model_cls, base = module.Model, module.callbacks.Callback
    original = model_cls.__dict__.get("fit")
    inherited = model_cls.fit
    signature = inspect.signature(inherited)

    def fit(self, *args, _inherited=inherited, _signature=signature, _base=base, **kwargs):
        bound = _signature.bind(self, *args, **kwargs)
        bound.arguments["callbacks"] = with_callback(bound.arguments.get("callbacks"), make_callback(_base, core))
        return _inherited(*bound.args, **bound.kwargs)

    functools.update_wrapper(fit, inherited)
    model_cls.fit = fit
    restore.append((model_cls, original))
    log.info("MLflow callback hooked into %s.Model.fit", module.__name__)


class _HookOnImport(importlib.abc.MetaPathFinder):
    """Hooks a Keras package the moment user code imports it, if it was not imported when the hook went in.

    ``TF_USE_LEGACY_KERAS`` picks the Keras that ``tf.keras`` means, not the one user code imports: on a base
    that sets it (1.17, 1.21), ``import keras`` in a run_fn is Keras 3, and without it ``import tf_keras`` is
    tf-keras. Either would otherwise train with no callback and log nothing.
    """

    def __init__(self, names: set[str], on_import: Any) -> None:
        self.names, self.on_import = set(names), on_import

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in self.names:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        self.names.discard(fullname)
        run = loader.exec_module

        def exec_module(module: Any, _run=run) -> None:
            _run(module)
            try:
                self.on_import(module)
            except Exception:  # noqa: BLE001 - a Keras we cannot hook must not break the user's import
                log.exception("could not hook %s.Model.fit; fits on its models are not logged", fullname)

        loader.exec_module = exec_module
        return spec


@contextlib.contextmanager
def installed(core: CallbackCore, modules: list[Any] | None = None) -> Iterator[None]:
    """Our callback in every ``fit`` while active: of ``modules``, or (None) of the Keras that
    ``keras_modules`` picks plus any other Keras package user code imports meanwhile."""
    lazy = modules is None
    modules = keras_modules() if modules is None else modules
    restore: list = []
    for module in modules:
        _hook(module, core, restore)
    finder = None
    if lazy:
        later = {name for name in KERAS_NAMES if name not in sys.modules}
        if later:
            finder = _HookOnImport(later, lambda module: _hook(module, core, restore))
            sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        if finder is not None:
            try:
                sys.meta_path.remove(finder)
            except ValueError:
                pass
        for model_cls, original in restore:
            if original is None:
                del model_cls.fit
            else:
                model_cls.fit = original
