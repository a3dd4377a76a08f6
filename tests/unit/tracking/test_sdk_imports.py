"""A training script that imports ``armillary.tracking`` and uses its SDK loads httpx, not the
tracking service's server code (FastAPI, SQLAlchemy, pydantic models)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_PROBE = """
import json, sys
from armillary import tracking
tracking.start_run, tracking.log_metrics, tracking.TrackingError  # resolved lazily
heavy = ("fastapi", "starlette", "sqlalchemy", "alembic", "pydantic", "armillary.kit")
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy
                        or m.startswith("armillary.kit") or m == "armillary.tracking.app")))
"""


def test_the_sdk_imports_none_of_the_server() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(done.stdout) == []


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    import armillary.tracking

    with pytest.raises(AttributeError, match="not_a_function"):
        armillary.tracking.not_a_function  # noqa: B018
