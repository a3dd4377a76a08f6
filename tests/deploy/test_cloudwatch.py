"""Metrics to CloudWatch (ADR 0033), checked statically: the chart's CloudWatch agent
configuration (monitoring.cloudwatchAgent) scrapes the platform's pods and declares, as
embedded-metric-format metrics, every metric and dimension the Terraform alarms read; its log
group is one the Terraform creates with a retention; the availability alarm reads the status
classes the agent's relabelling produces. Off by default. The Grafana dashboards' ConfigMap
(monitoring.grafanaDashboards) carries the dashboards as built, with the sidecar label."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from tests.deploy.conftest import DEPLOY
from tests.deploy.terraform_config import one, parse
from tests.deploy.test_helm_chart import documents, of_kind, render

ALARMS = DEPLOY / "terraform" / "modules" / "observability" / "slo_alarms.tf"
OBSERVABILITY = DEPLOY / "terraform" / "modules" / "observability" / "main.tf"
CW_VALUES = ["--set", "monitoring.cloudwatchAgent.enabled=true"]


def agent_configs(helm_env: dict[str, str], *args: str) -> dict[str, dict[str, Any]]:
    return of_kind(documents(render(helm_env, *CW_VALUES, *args)), "ConfigMap")


def declarations(configs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    agent = json.loads(configs["prometheus-cwagentconfig"]["data"]["cwagentconfig.json"])
    prometheus = agent["logs"]["metrics_collected"]["prometheus"]
    assert prometheus["prometheus_config_path"] == "/etc/prometheusconfig/prometheus.yaml"
    return list(prometheus["emf_processor"]["metric_declaration"])


def declared(decls: list[dict[str, Any]], metric: str, dimensions: set[str]) -> bool:
    return any(
        any(re.fullmatch(sel, metric) for sel in d["metric_selectors"])
        and dimensions in [set(dims) for dims in d["dimensions"]]
        for d in decls
    )


def terraform_alarms() -> dict[str, Any]:
    parsed = parse([ALARMS, OBSERVABILITY])[ALARMS.resolve()]
    locals_ = one(parsed["locals"])
    resources = {
        name: body
        for block in parsed["resource"]
        for name, body in block["aws_cloudwatch_metric_alarm"].items()
    }
    return {"locals": locals_, "resources": resources}


def test_off_by_default(helm_env: dict[str, str]) -> None:
    configs = of_kind(documents(render(helm_env)), "ConfigMap")
    assert "prometheus-cwagentconfig" not in configs
    assert not any(name.endswith("-dashboards") for name in configs)


def test_the_agent_scrapes_the_release_pods(helm_env: dict[str, str]) -> None:
    configs = agent_configs(helm_env)
    for name in ("prometheus-config", "prometheus-cwagentconfig"):
        assert configs[name]["metadata"]["namespace"] == "amazon-cloudwatch"
    scrape = yaml.safe_load(configs["prometheus-config"]["data"]["prometheus.yaml"])
    (job,) = scrape["scrape_configs"]
    assert job["kubernetes_sd_configs"][0]["role"] == "pod"
    relabel = {r.get("target_label"): r for r in job["relabel_configs"]}
    assert relabel["__address__"]["replacement"] == "$1:9464"
    assert "service" not in relabel, "the HTTP metrics' own service label must survive"
    classes = {r["replacement"]: r["regex"] for r in job["metric_relabel_configs"]}
    assert classes == {
        "5xx": "armillary_http_requests_total;5..",
        "ok": "armillary_http_requests_total;[1-4]..",
    }


def test_every_alarm_reads_a_declared_metric(helm_env: dict[str, str]) -> None:
    decls = declarations(agent_configs(helm_env))
    alarms = terraform_alarms()
    platform = alarms["locals"]["platform_alarms"]
    assert set(platform) >= {"task-queue-age-high", "workers-missing", "outbox-lag-high"}
    for alarm in platform.values():
        assert declared(decls, alarm["metric"], {"ClusterName"}), alarm["metric"]
    availability = alarms["resources"]["availability"]
    queries = {q["id"]: q for q in availability["metric_query"]}
    assert set(queries) == {"ratio", "errors", "answered"}
    assert queries["ratio"]["return_data"] is True
    for query_id, status_class in (("errors", "5xx"), ("answered", "ok")):
        metric = one(queries[query_id]["metric"])
        assert metric["metric_name"] == "armillary_http_requests_total"
        assert re.search(rf'status_class\s*=\s*"{status_class}"', metric["dimensions"])
        assert declared(decls, metric["metric_name"], {"ClusterName", "service", "status_class"})
    assert availability["evaluation_periods"] * 300 == 3600  # the 1-hour fast-burn window


def test_the_agent_writes_to_a_log_group_the_terraform_creates(helm_env: dict[str, str]) -> None:
    configs = agent_configs(helm_env, "--set", "monitoring.cloudwatchAgent.clusterName=prod")
    agent = json.loads(configs["prometheus-cwagentconfig"]["data"]["cwagentconfig.json"])
    assert agent["logs"]["metrics_collected"]["prometheus"]["cluster_name"] == "prod"
    text = OBSERVABILITY.read_text()
    groups = re.search(r"container_insights_groups = \[([^\]]*)\]", text)
    assert groups
    assert '"prometheus"' in groups.group(1)
    assert (
        'name              = "/aws/containerinsights/${var.eks_cluster_name}/${each.value}"' in text
    )


def test_the_dashboards_configmap_carries_the_built_dashboards(helm_env: dict[str, str]) -> None:
    docs = documents(render(helm_env, "--set", "monitoring.grafanaDashboards.enabled=true"))
    (configmap,) = [
        d
        for d in of_kind(docs, "ConfigMap").values()
        if d["metadata"]["name"].endswith("-dashboards")
    ]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    built = {
        p.name: json.loads(p.read_text())
        for p in (DEPLOY / "grafana" / "dashboards").glob("*.json")
    }
    assert {name: json.loads(text) for name, text in configmap["data"].items()} == built
