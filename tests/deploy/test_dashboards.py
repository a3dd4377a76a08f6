"""The Grafana dashboards (deploy/grafana/): the committed JSON is what deploy/grafana/build.py
builds, each dashboard loads into grafana-foundation-sdk's model types without losing a field,
every panel queries the provisioned Prometheus data source, and every query (panels and
variables) parses as PromQL with promtool. Whether the metrics they name exist in a running
stack is tests/faults/test_prometheus_scrape.py's job."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus

from tests.deploy.conftest import DEPLOY, run
from tests.deploy.test_alert_rules import identifiers, promtool

GRAFANA = DEPLOY / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
PANEL_TYPES = {"row", "timeseries", "stat"}
# Grafana's own variables and the dashboards' template variables, as a query gets them.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "6h", "$__interval": "1m"}
PROMQL_FUNCTIONS_AND_KEYWORDS = {
    "sum", "max", "min", "rate", "increase", "histogram_quantile", "topk", "group_left",
}  # fmt: skip


def build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grafana_build", GRAFANA / "build.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def loaded(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def panel_queries(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets") or []]


def variable_queries(dashboard: dict[str, Any]) -> list[str]:
    """The series selector inside each ``label_values(selector, label)`` variable query."""
    found = []
    for variable in dashboard.get("templating", {}).get("list", []):
        match = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["query"])
        assert match, variable["query"]
        found.append(match.group(1))
    return found


def as_promql(query: str, dashboard: dict[str, Any]) -> str:
    """``query`` with Grafana's variables replaced the way Grafana would (template variables
    by their all-value, ``.*``)."""
    for name, value in GRAFANA_VARIABLES.items():
        query = query.replace(name, value)
    for variable in dashboard.get("templating", {}).get("list", []):
        query = query.replace(f"${variable['name']}", variable.get("allValue") or ".*")
    assert "$" not in query, query
    return query


def metric_names(query: str) -> set[str]:
    """The metric names in a PromQL query: label matchers and label lists (``by (...)``,
    ``on (...)``) removed first, then functions and keywords."""
    query = re.sub(r"\{[^}]*\}", "", re.sub(r'"(?:\\.|[^"\\])*"|`[^`]*`', '""', query))
    query = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", query)
    return {n for n in identifiers(query) if n not in PROMQL_FUNCTIONS_AND_KEYWORDS}


def dashboard_metrics() -> set[str]:
    """Every metric a dashboard reads (series suffixes kept: ``_bucket``, ``_total``)."""
    names: set[str] = set()
    for path in DASHBOARDS:
        dashboard = loaded(path)
        for query in panel_queries(dashboard) + variable_queries(dashboard):
            names |= metric_names(as_promql(query, dashboard))
    return names


def test_the_four_dashboards_are_there() -> None:
    uids = {loaded(path)["uid"] for path in DASHBOARDS}
    assert uids == {
        "armillary-platform",
        "armillary-jobs",
        "armillary-quality",
        "armillary-serving",
    }


def test_committed_json_is_what_the_generator_builds() -> None:
    build = build_module()
    assert {path.name for path in DASHBOARDS} == set(build.DASHBOARDS)
    chart_copies = sorted(build.CHART_COPY.glob("*.json"))
    assert [p.name for p in chart_copies] == [p.name for p in DASHBOARDS]
    for path in DASHBOARDS + chart_copies:
        assert path.read_text() == build.render(build.DASHBOARDS[path.name]), (
            f"{path.name} differs from deploy/grafana/build.py's output: run "
            "`PYTHONPATH=src .venv/bin/python deploy/grafana/build.py`"
        )


def test_a_hand_edit_is_caught(tmp_path: Path) -> None:
    build = build_module()
    name = "armillary-jobs.json"
    edited = loaded(GRAFANA / "dashboards" / name)
    edited["panels"][1]["title"] = "edited by hand"
    assert json.dumps(edited, indent=2, sort_keys=True) + "\n" != build.render(
        build.DASHBOARDS[name]
    )


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_loads_into_the_sdk_model_types(path: Path) -> None:
    register_default_plugins()
    data = loaded(path)
    dashboard = model.Dashboard.from_json(data)
    # Nothing is dropped or altered by the typed model: every field is one the schema knows.
    assert json.loads(json.dumps(dashboard, cls=JSONEncoder)) == data
    assert dashboard.uid
    assert dashboard.panels
    ids = [panel.id_val for panel in dashboard.panels]
    assert ids == list(range(1, len(ids) + 1))
    for panel in dashboard.panels:
        assert panel.type_val in PANEL_TYPES, panel.type_val
        if isinstance(panel, model.RowPanel):
            continue
        assert panel.datasource is not None
        assert (panel.datasource.type_val, panel.datasource.uid) == ("prometheus", "prometheus")
        assert panel.targets, panel.title
        for target in panel.targets:
            assert isinstance(target, prometheus.Dataquery), (panel.title, type(target))
            assert target.expr
        grid = panel.grid_pos
        assert grid is not None
        assert grid.x + grid.w <= 24


def test_the_datasource_uid_is_the_provisioned_one() -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yaml").read_text())
    assert [d["uid"] for d in provisioned["datasources"]] == ["prometheus"]


def rules_file_of_queries(tmp_path: Path, queries: dict[str, str]) -> Path:
    """The queries as recording rules: promtool parses each expression of a rules file."""
    rules = [{"record": f"dashboard:query_{n}", "expr": q} for n, q in enumerate(queries.values())]
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    return path


def all_queries() -> dict[str, str]:
    found = {}
    for path in DASHBOARDS:
        dashboard = loaded(path)
        for n, query in enumerate(panel_queries(dashboard) + variable_queries(dashboard)):
            found[f"{path.stem}#{n}"] = as_promql(query, dashboard)
    return found


def test_every_query_parses(tmp_path: Path) -> None:
    queries = all_queries()
    assert len(queries) > 40
    result = run(promtool(), "check", "rules", str(rules_file_of_queries(tmp_path, queries)))
    assert "SUCCESS" in result.stdout


def test_a_broken_query_fails_the_parse(tmp_path: Path) -> None:
    broken = {"x": "sum by (service (rate(armillary_http_requests_total[5m]))"}
    result = run(
        promtool(), "check", "rules", str(rules_file_of_queries(tmp_path, broken)), check=False
    )
    assert result.returncode != 0


def test_the_dashboards_cover_what_the_issue_asks() -> None:
    metrics = dashboard_metrics()
    assert metrics >= {
        "armillary_http_requests_total",
        "armillary_http_request_duration_seconds_bucket",
        "armillary_task_queue_age_seconds",
        "armillary_task_runs_finished_total",
        "armillary_task_lease_lost_total",
        "armillary_worker_heartbeat_age_seconds",
        "armillary_quality_gate_failures_total",
        "armillary_predictions_total",
        "armillary_prediction_duration_seconds_bucket",
        "armillary_serving_variant_quality",
        "armillary_serving_drift_psi_max",
        "armillary_object_store_free_ratio",
    }
    # No identifier the extraction took for a metric is a PromQL word or a label.
    assert all(n.startswith(("armillary_", "process_")) for n in metrics), metrics
