"""A task type that makes a worker call (``probe_echo``), as ``train`` makes ``sagemaker_train``.

Preloaded into the sandboxes by the executor (and imported by the test process, whose
executor serves the call), so that worker calls are exercised end to end without SageMaker.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from armillary.contracts.tasks import NOOP, TASK_TYPES, TaskContext
from armillary.sdk.task_api import TaskApi, TaskApiError
from armillary.workflows.execution import child

NAME = "worker_call_probe"
CALL = "probe_echo"


class ProbeParams(BaseModel):
    send: str = ""
    call: str = CALL


PROBE = replace(NOOP, name=NAME, params=ProbeParams, worker_calls=(CALL,))


def probe(params: dict[str, Any], inputs: dict[str, Any], context: TaskContext) -> Any:
    upload = Path(context.workdir) / "upload.txt"
    upload.write_text(str(params.get("send", "")))
    reply = Path(context.workdir) / "reply.txt"
    aws = sorted(name for name in os.environ if name.startswith("AWS"))
    with TaskApi(context) as api:
        try:
            info = api.worker_call(str(params.get("call", CALL)), upload, reply)
        except TaskApiError as exc:
            return {"status": exc.status, "detail": exc.detail, "aws": aws}
    return {"status": 200, "info": info, "reply": reply.read_text(), "aws": aws}


def register() -> None:
    TASK_TYPES[NAME] = PROBE
    child.IMPLEMENTATIONS[NAME] = probe


def unregister() -> None:
    TASK_TYPES.pop(NAME, None)
    child.IMPLEMENTATIONS.pop(NAME, None)


register()
