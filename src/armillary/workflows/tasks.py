"""Implementations of the built-in task types ``python``, ``noop``, ``sleep`` and ``fail``.

Their contracts are in :mod:`armillary.contracts.tasks`; these functions register under the
``armillary.task_types`` entry point group and run in an executor's sandboxed child, with
params already validated against the contract.
"""

from __future__ import annotations

import importlib
import inspect
import linecache
import sys
import time
import types
from collections.abc import Callable
from typing import Any

from armillary.contracts.tasks import FailParams, PythonParams, SleepParams, TaskContext

_TASK_MODULE = "__task__"


class TaskFailed(Exception):
    """Raised by the ``fail`` type."""


def run_noop(
    params: dict[str, Any], inputs: dict[str, dict[str, Any]], context: TaskContext
) -> dict[str, Any]:
    """Returns ``values`` as the outputs."""
    values: dict[str, Any] = params.get("values", {})
    return values


def run_sleep(
    params: dict[str, Any], inputs: dict[str, dict[str, Any]], context: TaskContext
) -> dict[str, Any]:
    """Sleeps ``seconds``."""
    seconds = SleepParams.model_validate(params).seconds
    time.sleep(seconds)
    return {"seconds": seconds}


def run_fail(
    params: dict[str, Any], inputs: dict[str, dict[str, Any]], context: TaskContext
) -> dict[str, Any]:
    """Fails with ``message``."""
    raise TaskFailed(FailParams.model_validate(params).message)


def run_python(
    params: dict[str, Any], inputs: dict[str, dict[str, Any]], context: TaskContext
) -> dict[str, Any]:
    """Calls the user's function with ``args`` (and ``inputs``/``context`` if it takes them).

    Inline ``source`` runs in a fresh module; for a ``bundle`` the extracted directory goes on
    ``sys.path`` and ``entrypoint`` is ``package.module.function``, or a bare function name
    looked up in the bundle's module ``main``.
    """
    spec = PythonParams.model_validate(params)
    if spec.source is not None:
        function = _inline_function(spec.source, spec.entrypoint, context.task)
    else:
        if context.bundle_dir is None:
            raise RuntimeError(f"code bundle {spec.bundle!r} was not prepared for this task")
        function = _bundle_function(str(context.bundle_dir), spec.entrypoint)
    kwargs = dict(spec.args)
    accepted = _named_parameters(function)
    if "inputs" in accepted:
        kwargs["inputs"] = inputs
    if "context" in accepted:
        kwargs["context"] = context
    result = function(**kwargs)
    if result is None:
        return {}
    if not isinstance(result, dict):
        raise TypeError(f"the function must return a dict of outputs, not {type(result).__name__}")
    return result


def _inline_function(source: str, name: str, task: str) -> Callable[..., Any]:
    filename = f"<task:{task}>"
    # Tracebacks show the user's lines.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(_TASK_MODULE)
    module.__file__ = filename
    # Registered so that dataclasses, pickling and typing can find the module of its classes.
    sys.modules[_TASK_MODULE] = module
    code = compile(source, filename, "exec")
    exec(code, module.__dict__)  # noqa: S102 - running the user's code is the point
    return _callable(module, name, "the source")


def _bundle_function(bundle_dir: str, entrypoint: str) -> Callable[..., Any]:
    if bundle_dir not in sys.path:
        sys.path.insert(0, bundle_dir)
    module_name, _, name = entrypoint.rpartition(".")
    module = importlib.import_module(module_name or "main")
    return _callable(module, name, f"module {module.__name__}")


def _callable(module: types.ModuleType, name: str, where: str) -> Callable[..., Any]:
    function = getattr(module, name, None)
    if not callable(function):
        raise LookupError(f"entrypoint {name!r} is not a function defined in {where}")
    return function  # type: ignore[no-any-return]


def _named_parameters(function: Callable[..., Any]) -> set[str]:
    """Parameter names that can be passed by keyword (``**kwargs`` does not count)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return set()
    return {
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
