"""Entry points of the training task types (``armillary.task_types``): ``train``,
``evaluate`` and ``onnx_export``. Their contracts are in :mod:`armillary.contracts.training`.

The fork server imports every entry point before it forks attempts; scikit-learn (and SciPy)
would make it, and so each fork, heavier for every task type. They are imported by the
training attempt itself instead.
"""

from __future__ import annotations

from typing import Any

from armillary.contracts.tasks import TaskContext


def run_train(
    params: dict[str, Any], inputs: dict[str, dict[str, Any]], context: TaskContext
) -> dict[str, Any]:
    from .train import run_train as train

    return train(params, inputs, context)


def run_evaluate(
    params: dict[str, Any], inputs: dict[str, dict[str, Any]], context: TaskContext
) -> dict[str, Any]:
    from .evaluate import run_evaluate as evaluate

    return evaluate(params, inputs, context)


def run_onnx_export(
    params: dict[str, Any], inputs: dict[str, dict[str, Any]], context: TaskContext
) -> dict[str, Any]:
    from .onnx_export import run_onnx_export as export

    return export(params, inputs, context)
