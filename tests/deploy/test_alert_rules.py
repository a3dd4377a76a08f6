"""The Prometheus alert rules (deploy/prometheus/rules/): promtool accepts them and their unit
tests pass; those unit tests make every alert both fire and stay quiet, so an alert whose
expression breaks fails them; every alert carries its annotations, a severity and a runbook
section that exists; and every metric a rule reads is one the code exports, so renaming a
metric in src/armillary fails here instead of silencing an alert."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import DEPLOY, ROOT, run

RULES_DIR = DEPLOY / "prometheus" / "rules"
RULES = RULES_DIR / "armillary.rules.yml"
UNIT_TESTS = sorted((RULES_DIR / "tests").glob("*.yml"))
OPERATIONS = ROOT / "docs" / "operations.md"
SOURCE = ROOT / "src" / "armillary"

SEVERITIES = {"page", "ticket"}
ANNOTATIONS = {"summary", "description", "runbook_url"}
# Series suffixes the client library adds to a histogram's or a counter's declared name.
SERIES_SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, (
        "promtool is not on PATH: install it with "
        "`apt-get install -y --no-install-recommends prometheus` (Debian's package)"
    )
    return path


def rules_of(path: Path) -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules_of(RULES) if "alert" in rule]


def identifiers(expr: str) -> set[str]:
    """Metric and recording-rule names in a PromQL expression: string literals (label values,
    route regexes) removed, durations such as ``[30m:1m]`` not taken for names."""
    without_strings = re.sub(r'"(?:\\.|[^"\\])*"|`[^`]*`', "", expr)
    return set(re.findall(r"(?<![\w:.])[A-Za-z_:][\w:]*", without_strings))


def referenced_metrics() -> set[str]:
    names = set().union(*(identifiers(rule["expr"]) for rule in rules_of(RULES)))
    return {name for name in names if name.startswith("armillary_")}


def declared_metric_names() -> set[str]:
    """Every ``armillary_*`` string literal in the source: metric names are declared so."""
    found: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        found.update(re.findall(r"""["'](armillary_[a-z0-9_]+)["']""", path.read_text()))
    return found


def github_anchor(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_anchors() -> set[str]:
    text = OPERATIONS.read_text()
    section = text.split("\n## Alert runbooks\n", 1)
    assert len(section) == 2, "docs/operations.md has no '## Alert runbooks' section"
    body = section[1].split("\n## ", 1)[0]
    return {github_anchor(line[4:]) for line in body.splitlines() if line.startswith("### ")}


def unit_test_cases() -> list[dict[str, Any]]:
    return [
        case
        for path in UNIT_TESTS
        for group in yaml.safe_load(path.read_text())["tests"]
        for case in group.get("alert_rule_test", [])
    ]


def copy_with_exprs(tmp_path: Path, expr: str) -> list[Path]:
    """The rules with every alert's expression replaced by ``expr``, beside copies of the
    unit tests (they name their rule file relative to themselves)."""
    (tmp_path / "tests").mkdir()
    groups = yaml.safe_load(RULES.read_text())
    for group in groups["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["expr"] = expr
    (tmp_path / RULES.name).write_text(yaml.safe_dump(groups))
    return [Path(shutil.copy(test, tmp_path / "tests" / test.name)) for test in UNIT_TESTS]


def failed_cases(output: str) -> list[tuple[str, bool]]:
    """(alert, whether promtool expected it to fire) for each failed case in promtool's
    report ("alertname: A, time: T, exp:[...], got:[...]")."""
    pattern = r"alertname: (\w+), time: [^,]*,\s*exp:\[(\]?)"
    return [(name, not empty) for name, empty in re.findall(pattern, output)]


def test_promtool_accepts_the_rules() -> None:
    result = run(promtool(), "check", "rules", str(RULES))
    assert "SUCCESS" in result.stdout


def test_unit_tests_pass() -> None:
    assert UNIT_TESTS, "no promtool unit tests in deploy/prometheus/rules/tests/"
    run(promtool(), "test", "rules", *map(str, UNIT_TESTS))


def test_every_alert_is_tested_firing_and_quiet() -> None:
    cases = unit_test_cases()
    for alert in alerts():
        mine = [case for case in cases if case["alertname"] == alert["alert"]]
        assert any(case.get("exp_alerts") for case in mine), f"{alert['alert']} never fires"
        assert any(not case.get("exp_alerts") for case in mine), f"{alert['alert']} never quiet"


@pytest.mark.parametrize(
    ("expr", "fired_in_tests"),
    [("vector(1) > 2", True), ("vector(1)", False)],
    ids=["alerts-that-never-fire", "alerts-that-always-fire"],
)
def test_unit_tests_catch_a_broken_alert(tmp_path: Path, expr: str, fired_in_tests: bool) -> None:
    """Every alert made silent must fail a case that expects it to fire, and every alert made
    to fire always must fail a case that expects quiet."""
    broken = copy_with_exprs(tmp_path, expr)
    result = run(promtool(), "test", "rules", *map(str, broken), check=False)
    assert result.returncode != 0
    report = result.stdout + result.stderr
    caught = {name for name, expected in failed_cases(report) if expected == fired_in_tests}
    assert caught == {alert["alert"] for alert in alerts()}, report[-3000:]


def test_every_alert_has_severity_annotations_and_runbook() -> None:
    anchors = runbook_anchors()
    for alert in alerts():
        name = alert["alert"]
        assert alert.get("labels", {}).get("severity") in SEVERITIES, name
        assert set(alert.get("annotations", {})) >= ANNOTATIONS, name
        url = alert["annotations"]["runbook_url"]
        assert url == f"docs/operations.md#{github_anchor(name)}", f"{name}: {url}"
        assert github_anchor(name) in anchors, f"no '### {name}' in docs/operations.md"


def test_recording_rules_used_are_defined() -> None:
    recorded = {rule["record"] for rule in rules_of(RULES) if "record" in rule}
    used = set().union(*(identifiers(rule["expr"]) for rule in rules_of(RULES)))
    assert recorded >= {name for name in used if ":" in name}


def test_every_metric_in_the_rules_exists_in_the_code() -> None:
    metrics = referenced_metrics()
    # The extraction itself works: these are read by the SLO and serving alerts.
    assert metrics >= {
        "armillary_http_requests_total",
        "armillary_http_request_duration_seconds_bucket",
        "armillary_prediction_duration_seconds_count",
    }
    declared = declared_metric_names()
    missing = {
        name
        for name in metrics
        if name not in declared
        and not any(name.removesuffix(suffix) in declared for suffix in SERIES_SUFFIXES)
    }
    assert not missing, f"metrics the rules read but src/armillary does not export: {missing}"
