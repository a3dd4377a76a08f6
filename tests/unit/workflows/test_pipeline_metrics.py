"""Quality checks are counted by the dataset validated, and a failed gate (a report that did
not pass) by dataset too (issue 16)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from armillary.workflows.metrics import record_pipeline


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_failed_gate_is_counted_by_dataset() -> None:
    inputs = {"load": {"rows": 10, "dataset": {"name": "gate-orders", "version": 3}}}
    checks = [{"passed": True, "severity": "error"}, {"passed": False, "severity": "error"}]
    before = value("armillary_quality_gate_failures_total", dataset="gate-orders")
    checks_before = value("armillary_quality_checks_total", dataset="gate-orders")
    record_pipeline("validate", inputs, None, {"checks": checks, "passed": False})
    assert value("armillary_quality_gate_failures_total", dataset="gate-orders") == before + 1
    assert value("armillary_quality_checks_total", dataset="gate-orders") == checks_before + 2
    # A gate that passed (a warning failed) is not a gate failure.
    warned = [{"passed": False, "severity": "warn"}]
    record_pipeline("validate", inputs, None, {"checks": warned, "passed": True})
    assert value("armillary_quality_gate_failures_total", dataset="gate-orders") == before + 1
