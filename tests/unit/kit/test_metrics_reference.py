"""docs/metrics.md is generated from the metric objects (scripts/metrics_reference.py): it
fails here when a metric is added, renamed or relabelled without regenerating it, and when a
module declares metrics the generator does not read."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "metrics_reference.py"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("metrics_reference", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("metrics_reference", module)
    spec.loader.exec_module(module)
    return module


def test_docs_metrics_md_is_up_to_date() -> None:
    expected = generator().render()
    found = (ROOT / "docs" / "metrics.md").read_text()
    assert found == expected, (
        "docs/metrics.md is out of date: run `PYTHONPATH=src python scripts/metrics_reference.py`"
    )


def test_every_module_that_declares_metrics_is_in_the_reference() -> None:
    declaring = set()
    for path in (ROOT / "src").rglob("*.py"):
        text = path.read_text()
        if "prometheus_client" in text and re.search(r"\b(Counter|Gauge|Histogram)\(", text):
            declaring.add(".".join(path.relative_to(ROOT / "src").with_suffix("").parts))
    assert declaring == set(generator().MODULES)


def test_the_reference_names_the_new_metrics_with_their_labels() -> None:
    text = generator().render()
    for row in (
        "| `armillary_http_requests_total` | counter | `service`, `method`, `route`, `status` |",
        "| `armillary_worker_heartbeat_age_seconds` | gauge | `worker` |",
        "| `armillary_serving_drift_psi` | gauge | `deployment`, `variant`, `feature` |",
    ):
        assert row in text
