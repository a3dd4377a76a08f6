"""A task type that reports the AWS variables it was given, with an ``env_passthrough`` like
the one ``train`` declares for its SageMaker backend.

Imported into the fork server through the executor's ``preload`` (and into the test process,
whose executor computes the server's environment), so that the passthrough is exercised end
to end without the training implementation or a platform API.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from armillary.contracts.tasks import NOOP, TASK_TYPES, TaskContext
from armillary.workflows.execution import child

NAME = "sagemaker_env_probe"
PASSTHROUGH = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")
PROBE = replace(NOOP, name=NAME, env_passthrough=PASSTHROUGH)


def probe(params: dict[str, Any], inputs: dict[str, Any], context: TaskContext) -> Any:
    return {"env": {name: value for name, value in os.environ.items() if "AWS" in name}}


def register() -> None:
    TASK_TYPES[NAME] = PROBE
    child.IMPLEMENTATIONS[NAME] = probe


def unregister() -> None:
    TASK_TYPES.pop(NAME, None)
    child.IMPLEMENTATIONS.pop(NAME, None)


register()
