"""Load the user's function and call it, telling their faults apart from ours.

Errors say what is wrong and what *is* there ("module 'trainer' has no 'run_fn';
found: train, build_model"). A syntax error or a missing dependency inside
user code is a UserCodeLoadError that keeps the user's own traceback.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from types import ModuleType
from typing import Any, Callable

from trainer_runtime.core.errors import RuntimeFailure, UserCodeError, UserCodeLoadError

SPEC_FORMS = "pkg.module:function, pkg.module.function, or /path/to/file.py:function"


def functions_in(module: ModuleType) -> list[str]:
    return sorted(name for name, value in vars(module).items()
                  if inspect.isfunction(value) and not name.startswith("_")
                  and getattr(value, "__module__", None) == module.__name__)


def get_function(module: ModuleType, name: str) -> Callable[..., Any]:
    fn = getattr(module, name, None)
    if fn is None:
        found = ", ".join(functions_in(module)) or "no public functions"
        raise UserCodeLoadError(f"module {module.__name__!r} has no {name!r}; found: {found}",
                                hint=f"define {name}(...) in {getattr(module, '__file__', module.__name__)} "
                                     "or point the runtime at the right function")
    if not callable(fn):
        raise UserCodeLoadError(f"{module.__name__}.{name} is a {type(fn).__name__}, not a function",
                                hint="point the runtime at a function")
    return fn


def import_error(target: str, exc: BaseException) -> UserCodeLoadError:
    """Turn an import-time failure of user code into a typed error (chain it with ``from exc``)."""
    if isinstance(exc, SyntaxError):
        where = f"{exc.filename}:{exc.lineno}" if exc.filename else target
        return UserCodeLoadError(f"syntax error in your code at {where}: {exc.msg}",
                                 hint="fix the syntax error; the traceback shows the line")
    if isinstance(exc, ModuleNotFoundError):
        missing = exc.name or str(exc)
        top = target.split(":")[0].split("@")[0]
        if missing and (top == missing or top.startswith(missing + ".")):
            return UserCodeLoadError(f"cannot import module {top!r}: it is not on the path",
                                     hint="check the module name; install your package in the image or "
                                          "set PYTHONPATH")
        return UserCodeLoadError(f"your module {top!r} imports {missing!r}, which is not installed",
                                 hint=f"add {missing!r} to your package's dependencies (the image only "
                                      "has what requirements.lock pins)")
    return UserCodeLoadError(f"importing {target!r} raised {type(exc).__name__}: {exc}",
                             hint="the traceback shows where your module fails at import time")


def load_function(spec: str) -> Callable[..., Any]:
    """Resolve ``spec`` (see SPEC_FORMS) to a callable, or raise UserCodeLoadError."""
    if ":" in spec:
        module_part, _, name = spec.rpartition(":")
    elif "." in spec:
        module_part, _, name = spec.rpartition(".")
    else:
        raise UserCodeLoadError(f"cannot tell module from function in {spec!r}",
                                hint=f"use one of: {SPEC_FORMS}")
    if not module_part or not name:
        raise UserCodeLoadError(f"incomplete function reference {spec!r}", hint=f"use one of: {SPEC_FORMS}")
    try:
        if module_part.endswith(".py"):
            if not os.path.isfile(module_part):
                raise UserCodeLoadError(f"no such file: {module_part}", hint=f"use one of: {SPEC_FORMS}")
            module_name = os.path.splitext(os.path.basename(module_part))[0]
            file_spec = importlib.util.spec_from_file_location(module_name, module_part)
            module = importlib.util.module_from_spec(file_spec)
            sys.modules[module_name] = module
            file_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_part)
    except RuntimeFailure:
        raise
    except (Exception, SystemExit) as exc:
        raise import_error(spec, exc) from exc
    return get_function(module, name)


def call_user(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call user code; whatever it raises becomes a UserCodeError chained to the original.

    Our own failures (RuntimeFailure, e.g. Killed from a signal) and interpreter
    exits pass through untouched.
    """
    try:
        return fn(*args, **kwargs)
    except (RuntimeFailure, KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        name = getattr(fn, "__qualname__", repr(fn))
        raise UserCodeError(f"{name} raised {type(exc).__name__}: {exc}",
                            hint="this is an error in the training code; the traceback shows where") from exc
