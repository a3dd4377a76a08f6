"""The ``lineage`` form field of an upload: where a version came from.

Free JSON chosen by the uploader, except two keys the server owns: ``job_id`` and
``recorded_by``. A job token's upload gets the job id from the token itself, so a task
cannot claim to be another job; any other caller's ``job_id`` is dropped."""

from __future__ import annotations

import json
from typing import Any

from armillary.kit.authz import Principal
from armillary.kit.errors import Unprocessable

LINEAGE_FIELD = "lineage"
MAX_LINEAGE_BYTES = 16 * 1024


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_lineage(raw: str | None, principal: Principal) -> dict[str, Any]:
    """The lineage to store for an upload by ``principal``: the sent JSON object (422 when
    it is not one, or larger than 16 KiB) with the server-owned keys set."""
    lineage: dict[str, Any] = {}
    if raw is not None and raw.strip():
        if len(raw.encode()) > MAX_LINEAGE_BYTES:
            raise Unprocessable(f"'lineage' is larger than {MAX_LINEAGE_BYTES} bytes")
        try:
            value = json.loads(raw, parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            raise Unprocessable("'lineage' must be a JSON object") from exc
        if not isinstance(value, dict):
            raise Unprocessable("'lineage' must be a JSON object")
        lineage = value
    lineage.pop("job_id", None)
    lineage.pop("recorded_by", None)
    if principal.job_id is not None:
        lineage["job_id"] = str(principal.job_id)
        lineage["recorded_by"] = "job"
    elif lineage:
        lineage["recorded_by"] = "user"
    return lineage
