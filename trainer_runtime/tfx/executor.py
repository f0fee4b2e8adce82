"""``TrackedExecutor``: TFX's GenericExecutor with the runtime's preflight, status and callback.

Use it through ``Trainer(custom_executor_spec=executor_spec.ExecutorClassSpec(TrackedExecutor))``
on any runner (LocalDagRunner, Vertex), or let ``entrypoint.py`` swap it in for
the Trainer when it is the pipeline's ``default_commands``.

The user's run_fn is resolved exactly the way TFX resolves it (``run_fn``,
``module_file``, or the ``module_path`` wheel TFX builds from ``module_file``).
A failure in user code still propagates as the user's own exception, so TFX
and Vertex see it; the run is FAILED and the status says why.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List

from tfx import types
from tfx.components.trainer.executor import GenericExecutor
from tfx.components.util import udf_utils
from tfx.dsl.io import fileio

from trainer_runtime.core.config import load_config
from trainer_runtime.core.errors import UserCodeError, UserCodeLoadError
from trainer_runtime.run import cluster
from trainer_runtime.tfx import context, tuner_link
from trainer_runtime.tfx.compat import warn_if_compiled_with_other_version
from trainer_runtime.tfx.tracked import train_tracked
from trainer_runtime.training.user_code import functions_in, import_error

log = logging.getLogger(__name__)


def resolve_run_fn(exec_properties: Dict[str, Any], fn_key: str = "run_fn"):
    """udf_utils.get_fn, with its failures turned into UserCodeLoadError that say what is there.

    ``fn_key``: the component's function, ``run_fn`` (Trainer) or ``tuner_fn`` (Tuner)."""
    target = (exec_properties.get("module_path") or exec_properties.get("module_file")
              or exec_properties.get(fn_key) or "<none>")
    try:
        return udf_utils.get_fn(exec_properties, fn_key)
    except AttributeError as exc:
        module = _module_of(exec_properties, fn_key)
        found = ", ".join(functions_in(module)) if module else "?"
        module_name, fn_name = _names(exec_properties, fn_key)
        raise UserCodeLoadError(f"module {module_name!r} has no {fn_name!r}; found: {found}",
                                hint=f"define {fn_name}(fn_args) in your module, or point the component's "
                                     f"{fn_key} at the right function") from exc
    except ImportError as exc:
        cause = exc.__cause__ or exc
        raise import_error(str(target), cause) from cause
    except (SyntaxError, ValueError) as exc:
        raise import_error(str(target), exc) from exc


def _names(exec_properties: Dict[str, Any], fn_key: str = "run_fn") -> tuple[str, str]:
    """(module, function) the component asked for, for messages."""
    fn = exec_properties.get(fn_key)
    module = exec_properties.get("module_path") or exec_properties.get("module_file")
    if module:
        return str(module).split("@")[0], fn or fn_key
    module, _, name = (fn or "?").rpartition(".")
    return module, name


def _module_of(exec_properties: Dict[str, Any], fn_key: str = "run_fn"):
    """The user's module, already imported by TFX's failed lookup, to list what it has."""
    import sys

    module_file = exec_properties.get("module_file")
    if module_file:
        name = os.path.splitext(os.path.basename(module_file))[0]
        for module in list(sys.modules.values()):
            if getattr(module, "__file__", None) and os.path.basename(module.__file__) == name + ".py":
                return module
    module_path = (exec_properties.get("module_path") or "").split("@")[0]
    if not module_path and exec_properties.get(fn_key):
        module_path = exec_properties[fn_key].rpartition(".")[0]
    return sys.modules.get(module_path)


class TrackedExecutor(GenericExecutor):
    """GenericExecutor whose Do runs the user's run_fn inside a tracked MLflow run."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        fn_args = self._GetFnArgs(input_dict, output_dict, exec_properties)
        ctx = getattr(self, "_context", None)

        def load():
            config = load_config(context.env(), fn_args.custom_config)
            warn_if_compiled_with_other_version(config)
            return config

        def check_model() -> None:
            if not cluster.current(context.env()).is_chief:
                return  # in a distributed training the chief writes the model (TFX leaves it to the user module)
            if not fileio.exists(fn_args.serving_model_dir):
                original = RuntimeError("run_fn failed to generate model.")
                raise UserCodeError(f"run_fn returned without writing a model to {fn_args.serving_model_dir}",
                                    hint="save the model to fn_args.serving_model_dir") from original

        train_tracked(load, lambda: resolve_run_fn(exec_properties), fn_args, ctx, after=check_model,
                      extra_tags=tuner_link.tags_from_inputs(input_dict))
        log.info("Training complete. Model written to %s. ModelRun written to %s",
                 fn_args.serving_model_dir, fn_args.model_run_dir)
