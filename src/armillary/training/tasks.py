"""Entry points of the training task types (``armillary.task_types``): ``train`` and
``evaluate``. Their contracts are in :mod:`armillary.contracts.training`."""

from __future__ import annotations

from .evaluate import run_evaluate
from .train import run_train

__all__ = ["run_evaluate", "run_train"]
