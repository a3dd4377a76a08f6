"""Build the Grafana dashboards of Armillary with grafana-foundation-sdk (ADR 0033).

    PYTHONPATH=src .venv/bin/python deploy/grafana/build.py          # (re)write the JSON
    PYTHONPATH=src .venv/bin/python deploy/grafana/build.py --check  # exit 1 if it differs

The JSON under deploy/grafana/dashboards/ is committed (Grafana's file provisioning and the
Helm chart's ConfigMap read it as is); tests/deploy/test_dashboards.py fails when it differs
from what this script builds, when a dashboard does not load into the SDK's model types, when
a query does not parse, and (tests/faults/test_prometheus_scrape.py) when a metric a query
names is not exported by a running distributed stack.

Queries use Grafana's ``$__rate_interval`` and the dashboards' variables (``$service``,
``$deployment``, ``$variant``); the SLO figures match deploy/prometheus/rules/armillary.rules.yml
(availability 99.5 %, 99 % of requests within 0.5 s, over 30 days).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

OUT = Path(__file__).resolve().parent / "dashboards"
# The Helm chart's copy (a chart reads only files inside it): the dashboards' ConfigMap.
CHART_COPY = Path(__file__).resolve().parents[1] / "helm" / "armillary" / "files" / "dashboards"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="prometheus")
RATE = "$__rate_interval"
AVAILABILITY_OBJECTIVE = 0.995
LATENCY_OBJECTIVE_SECONDS = "0.5"
# Streams whose duration is the client's bandwidth, as in the latency SLO rules.
STREAMS = (
    r".+/(logs|upload|content)|.+/artifacts/.+|/api/v1/downloads/.+|.+/datasets/[^/]+/versions"
)

Query = tuple[str, str]  # (PromQL, legend)
P = TypeVar("P", timeseries.Panel, stat.Panel)


def _target(expr: str, legend: str, ref: str) -> prometheus.Dataquery:
    return (
        prometheus.Dataquery()
        .expr(expr)
        .legend_format(legend)
        .ref_id(ref)
        .datasource(DATASOURCE)
        .range()
    )


def _with_targets(panel: P, queries: list[Query]) -> P:
    for n, (expr, legend) in enumerate(queries):
        panel = panel.with_target(_target(expr, legend, chr(ord("A") + n)))
    return panel


def graph(
    title: str, queries: list[Query], unit: str, description: str = "", width: int = 12
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(8)
        .span(width)
        .fill_opacity(10)
        .legend(
            cb.VizLegendOptions()
            .show_legend(True)
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .calcs(["mean", "max", "lastNotNull"])
        )
    )
    return _with_targets(panel, queries)


def single(
    title: str, queries: list[Query], unit: str, description: str = "", width: int = 6
) -> stat.Panel:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(5)
        .span(width)
        .graph_mode(common.BigValueGraphMode.AREA)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    return _with_targets(panel, queries)


def variable(name: str, label: str, query: str) -> db.QueryVariable:
    return (
        db.QueryVariable(name)
        .label(label)
        .query(query)
        .datasource(DATASOURCE)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
    )


def base(uid: str, title: str, description: str) -> db.Dashboard:
    return (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["armillary"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("utc")
        .readonly()
    )


# --- platform health ---------------------------------------------------------------------------


def platform() -> db.Dashboard:
    svc = 'service=~"$service"'
    total = f"sum by (service) (rate(armillary_http_requests_total{{{svc}}}[{RATE}]))"
    five = f'sum by (service) (rate(armillary_http_requests_total{{{svc}, status=~"5.."}}[{RATE}]))'
    fast = (
        "sum by (service) (rate(armillary_http_request_duration_seconds_bucket"
        f'{{{svc}, le="{LATENCY_OBJECTIVE_SECONDS}", route!~`{STREAMS}`}}[{RATE}]))'
    )
    counted = (
        "sum by (service) (rate(armillary_http_request_duration_seconds_count"
        f"{{{svc}, route!~`{STREAMS}`}}[{RATE}]))"
    )
    budget = 1 - AVAILABILITY_OBJECTIVE
    month_5xx = (
        f'sum by (service) (increase(armillary_http_requests_total{{{svc}, status=~"5.."}}[30d]))'
    )
    month_all = f"sum by (service) (increase(armillary_http_requests_total{{{svc}}}[30d]))"

    def quantile(q: str) -> Query:
        expr = (
            f"histogram_quantile({q}, sum by (service, le) "
            f"(rate(armillary_http_request_duration_seconds_bucket{{{svc}}}[{RATE}])))"
        )
        return expr, f"{{{{service}}}} p{q[2:]}"

    return (
        base(
            "armillary-platform",
            "Armillary platform health",
            "Availability, latency and error budget per service (SLOs of "
            "deploy/prometheus/rules), and saturation.",
        )
        .with_variable(
            variable("service", "Service", "label_values(armillary_http_requests_total, service)")
        )
        .with_row(db.Row("Service level"))
        .with_panel(
            single(
                "Availability (non-5xx share)",
                [(f"1 - ({five} / {total})", "{{service}}")],
                "percentunit",
                "Objective: 99.5 % of requests without a 5xx status over 30 days.",
            )
        )
        .with_panel(
            single(
                "Error budget left (30 days)",
                [(f"1 - (({month_5xx} / {month_all}) / {budget:.3f})", "{{service}}")],
                "percentunit",
                "Share of the 30-day availability error budget (0.5 % of requests) not yet spent.",
            )
        )
        .with_panel(
            single(
                "Within 0.5 s (latency SLI)",
                [(f"{fast} / {counted}", "{{service}}")],
                "percentunit",
                "Objective: 99 % of non-streaming requests answered within 0.5 s.",
            )
        )
        .with_panel(
            single(
                "Open circuit breakers",
                [("sum(max by (service) (armillary_service_circuit_open))", "open")],
                "none",
                "Upstream services callers fail fast to (1 per open breaker).",
            )
        )
        .with_row(db.Row("Traffic, errors, latency"))
        .with_panel(graph("Requests per second", [(total, "{{service}}")], "reqps"))
        .with_panel(
            graph(
                "5xx ratio",
                [(f"{five} / {total}", "{{service}}")],
                "percentunit",
                "The availability SLI's complement; the budget allows 0.5 %.",
            )
        )
        .with_panel(
            graph(
                "Latency p50 / p99",
                [quantile("0.50"), quantile("0.99")],
                "s",
            )
        )
        .with_panel(
            graph(
                "4xx and 5xx by route",
                [
                    (
                        f"topk(10, sum by (service, route, status) "
                        f"(rate(armillary_http_errors_total{{{svc}}}[{RATE}])))",
                        "{{service}} {{route}} {{status}}",
                    )
                ],
                "reqps",
            )
        )
        .with_row(db.Row("Saturation"))
        .with_panel(
            graph(
                "Requests in progress",
                [("sum by (job) (armillary_http_requests_in_progress)", "{{job}}")],
                "none",
                width=8,
            )
        )
        .with_panel(
            graph(
                "CPU per process kind",
                [("sum by (job) (rate(process_cpu_seconds_total[$__rate_interval]))", "{{job}}")],
                "percentunit",
                width=8,
            )
        )
        .with_panel(
            graph(
                "Resident memory",
                [("sum by (job) (process_resident_memory_bytes)", "{{job}}")],
                "bytes",
                width=8,
            )
        )
        .with_panel(
            graph(
                "Object store free space",
                [("min(armillary_object_store_free_ratio)", "free")],
                "percentunit",
                width=8,
            )
        )
        .with_panel(
            graph(
                "Outbox lag",
                [("max(armillary_outbox_lag_seconds)", "oldest unpublished event")],
                "s",
                width=8,
            )
        )
        .with_panel(
            graph(
                "Consumer lag and dead letters",
                [
                    ("max by (consumer) (armillary_event_consumer_lag_messages)", "{{consumer}}"),
                    ("max(armillary_event_dead_letters)", "dead letters"),
                ],
                "none",
                width=8,
            )
        )
    )


# --- jobs and workers --------------------------------------------------------------------------


def jobs() -> db.Dashboard:
    return (
        base(
            "armillary-jobs",
            "Armillary jobs and workers",
            "Queue depth and age, throughput, failures by task type, workers and lease losses.",
        )
        .with_row(db.Row("Queue"))
        .with_panel(single("Queued task runs", [("sum(armillary_tasks_queued)", "queued")], "none"))
        .with_panel(
            single("Running task runs", [("sum(armillary_tasks_running)", "running")], "none")
        )
        .with_panel(
            single(
                "Oldest queued task",
                [("max(armillary_task_queue_age_seconds)", "age")],
                "s",
                "Age of the oldest task run waiting for a worker.",
            )
        )
        .with_panel(single("Live workers", [("max(armillary_workers_live)", "live")], "none"))
        .with_panel(
            graph(
                "Queue depth and age",
                [
                    ("sum(armillary_tasks_queued)", "queued"),
                    ("sum(armillary_tasks_running)", "running"),
                ],
                "none",
            )
        )
        .with_panel(
            graph(
                "Queue age",
                [("max(armillary_task_queue_age_seconds)", "oldest queued task")],
                "s",
            )
        )
        .with_row(db.Row("Throughput and failures"))
        .with_panel(
            graph(
                "Jobs finished per minute, by status",
                [
                    (
                        f"sum by (status) (rate(armillary_jobs_finished_total[{RATE}])) * 60",
                        "{{status}}",
                    )
                ],
                "none",
            )
        )
        .with_panel(
            graph(
                "Task run failures per minute, by type",
                [
                    (
                        "sum by (type) (rate(armillary_task_runs_finished_total"
                        f'{{status="failed"}}[{RATE}])) * 60',
                        "{{type}}",
                    )
                ],
                "none",
            )
        )
        .with_panel(
            graph(
                "Task run failure ratio, by type",
                [
                    (
                        "sum by (type) (rate(armillary_task_runs_finished_total"
                        f'{{status="failed"}}[{RATE}])) / sum by (type) '
                        f"(rate(armillary_task_runs_finished_total[{RATE}]))",
                        "{{type}}",
                    )
                ],
                "percentunit",
            )
        )
        .with_panel(
            graph(
                "Durations p95",
                [
                    (
                        "histogram_quantile(0.95, sum by (type, le) "
                        f"(rate(armillary_task_run_duration_seconds_bucket[{RATE}])))",
                        "task {{type}}",
                    ),
                    (
                        "histogram_quantile(0.95, sum by (le) "
                        f"(rate(armillary_job_duration_seconds_bucket[{RATE}])))",
                        "job",
                    ),
                ],
                "s",
            )
        )
        .with_row(db.Row("Workers"))
        .with_panel(
            graph(
                "Heartbeat age, by worker",
                [("max by (worker) (armillary_worker_heartbeat_age_seconds)", "{{worker}}")],
                "s",
                "Seconds since each worker last renewed its heartbeat; a lost worker climbs.",
            )
        )
        .with_panel(
            graph(
                "Lease losses per hour, by task type",
                [
                    (
                        "sum by (type) (increase(armillary_task_lease_lost_total[1h]))",
                        "{{type}}",
                    )
                ],
                "none",
                "Task runs whose worker lost its lease (crash, partition): requeued.",
            )
        )
    )


# --- data quality ------------------------------------------------------------------------------


def quality() -> db.Dashboard:
    return (
        base(
            "armillary-quality",
            "Armillary data quality",
            "Quality gate failures by dataset, checks run and failed by severity.",
        )
        .with_panel(
            single(
                "Gate failures (range)",
                [("sum(increase(armillary_quality_gate_failures_total[$__range]))", "failures")],
                "none",
                width=8,
            )
        )
        .with_panel(
            single(
                "Checks run (range)",
                [("sum(increase(armillary_quality_checks_total[$__range]))", "checks")],
                "none",
                width=8,
            )
        )
        .with_panel(
            single(
                "Failed check share (range)",
                [
                    (
                        "sum(increase(armillary_quality_checks_failed_total[$__range])) / "
                        "sum(increase(armillary_quality_checks_total[$__range]))",
                        "failed",
                    )
                ],
                "percentunit",
                width=8,
            )
        )
        .with_panel(
            graph(
                "Gate failures per hour, by dataset",
                [
                    (
                        "sum by (dataset) (increase(armillary_quality_gate_failures_total[1h]))",
                        "{{dataset}}",
                    )
                ],
                "none",
                width=24,
            )
        )
        .with_panel(
            graph(
                "Checks per minute",
                [(f"sum(rate(armillary_quality_checks_total[{RATE}])) * 60", "run")],
                "none",
            )
        )
        .with_panel(
            graph(
                "Failed checks per minute, by severity",
                [
                    (
                        "sum by (severity) "
                        f"(rate(armillary_quality_checks_failed_total[{RATE}])) * 60",
                        "{{severity}}",
                    )
                ],
                "none",
            )
        )
    )


# --- serving -----------------------------------------------------------------------------------


def serving() -> db.Dashboard:
    sel = 'deployment=~"$deployment", variant=~"$variant"'
    by = "deployment, variant"
    requests = f"sum by ({by}) (rate(armillary_predictions_total{{{sel}}}[{RATE}]))"

    def quantile(q: str) -> Query:
        expr = (
            f"histogram_quantile({q}, sum by ({by}, le) "
            f"(rate(armillary_prediction_duration_seconds_bucket{{{sel}}}[{RATE}])))"
        )
        return expr, f"{{{{deployment}}}} {{{{variant}}}} p{q[2:]}"

    return (
        base(
            "armillary-serving",
            "Armillary serving",
            "Per deployment and variant: traffic split, latency, errors, live A/B quality "
            "from feedback, and drift (PSI against the training reference).",
        )
        .with_variable(
            variable(
                "deployment", "Deployment", "label_values(armillary_predictions_total, deployment)"
            )
        )
        .with_variable(
            variable(
                "variant",
                "Variant",
                'label_values(armillary_predictions_total{deployment=~"$deployment"}, variant)',
            )
        )
        .with_row(db.Row("Traffic"))
        .with_panel(
            graph(
                "Traffic split",
                [
                    (
                        f"{requests} / on (deployment) group_left sum by (deployment) "
                        f'(rate(armillary_predictions_total{{deployment=~"$deployment"}}[{RATE}]))',
                        "{{deployment}} {{variant}}",
                    )
                ],
                "percentunit",
                "Each variant's share of its deployment's predictions.",
            )
        )
        .with_panel(
            graph("Predictions per second", [(requests, "{{deployment}} {{variant}}")], "reqps")
        )
        .with_panel(graph("Latency p50 / p99", [quantile("0.50"), quantile("0.99")], "s"))
        .with_panel(
            graph(
                "Errors per second, by outcome",
                [
                    (
                        f"sum by ({by}, outcome) (rate(armillary_predictions_total"
                        f'{{{sel}, outcome!="ok"}}[{RATE}]))',
                        "{{deployment}} {{variant}} {{outcome}}",
                    )
                ],
                "reqps",
                "`error`: the model failed; `bad_input`: the request did not fit the schema.",
            )
        )
        .with_row(db.Row("Live A/B quality"))
        .with_panel(
            graph(
                "Quality from feedback (sliding window)",
                [
                    (
                        f"max by ({by}, metric) (armillary_serving_variant_quality{{{sel}}})",
                        "{{deployment}} {{variant}} {{metric}}",
                    )
                ],
                "none",
                "Accuracy (classification) or error (regression) over the recent feedback.",
            )
        )
        .with_panel(
            graph(
                "Feedback per minute",
                [
                    (
                        f"sum by ({by}) "
                        f"(rate(armillary_serving_feedback_total{{{sel}}}[{RATE}])) * 60",
                        "{{deployment}} {{variant}}",
                    )
                ],
                "none",
            )
        )
        .with_panel(
            graph(
                "Shadow copies and auto-rollbacks",
                [
                    (
                        "sum by (deployment, outcome) (rate(armillary_shadow_predictions_total"
                        f'{{deployment=~"$deployment"}}[{RATE}]))',
                        "shadow {{deployment}} {{outcome}}",
                    ),
                    ("sum(increase(armillary_auto_rollbacks_total[1h]))", "rollbacks per hour"),
                ],
                "none",
            )
        )
        .with_row(db.Row("Drift"))
        .with_panel(
            graph(
                "Drift: largest PSI per variant",
                [
                    (
                        f"max by ({by}) (armillary_serving_drift_psi_max{{{sel}}})",
                        "{{deployment}} {{variant}}",
                    )
                ],
                "none",
                "Population stability index of sampled requests against the training reference; "
                "above 0.2 is a shift worth a look (the drift alert's threshold).",
            )
        )
        .with_panel(
            graph(
                "Drift: top features",
                [
                    (
                        f"topk(10, max by ({by}, feature) (armillary_serving_drift_psi{{{sel}}}))",
                        "{{deployment}} {{variant}} {{feature}}",
                    )
                ],
                "none",
            )
        )
        .with_row(db.Row("Request log"))
        .with_panel(
            graph(
                "Rows per model call and dropped log rows",
                [
                    (
                        "histogram_quantile(0.5, sum by (le) "
                        f"(rate(armillary_prediction_batch_rows_bucket[{RATE}])))",
                        "rows per call p50",
                    ),
                    (
                        f"sum(rate(armillary_prediction_log_dropped_total[{RATE}]))",
                        "log rows dropped/s",
                    ),
                    (
                        f"sum by (outcome) (rate(armillary_prediction_samples_total[{RATE}]))",
                        "samples {{outcome}}/s",
                    ),
                ],
                "none",
                width=24,
            )
        )
    )


DASHBOARDS: dict[str, Callable[[], db.Dashboard]] = {
    "armillary-platform.json": platform,
    "armillary-jobs.json": jobs,
    "armillary-quality.json": quality,
    "armillary-serving.json": serving,
}


def render(build: Callable[[], db.Dashboard]) -> str:
    """The dashboard's JSON, its panels numbered in order (Grafana links to a panel by id)."""
    built = build().build()
    for number, panel in enumerate(built.panels or [], start=1):
        panel.id_val = number
    return json.dumps(built, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, build in DASHBOARDS.items():
        text = render(build)
        for path in (OUT / name, CHART_COPY / name):
            if check:
                if not path.exists() or path.read_text() != text:
                    stale.append(str(path))
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    if stale:
        print("stale dashboards (run deploy/grafana/build.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
