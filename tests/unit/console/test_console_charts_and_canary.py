"""The console's pure helpers: chart geometry, lineage layout, canary weights, sort links."""

from __future__ import annotations

import pytest

from armillary.console.charts import intervals, layout_lineage, metric_bars
from armillary.console.routes_deployments import canary_weights, traffic_shares
from armillary.console.routes_models import sort_keys, toggled


def test_each_metric_gets_its_own_scale_and_missing_values_no_bar() -> None:
    charts = metric_bars({"rmse": [2.0, 4.0, None], "r2": [0.5, 0.25, 0.1]}, [1, 2, 3])
    rmse, r2 = charts
    assert [b.height for b in rmse.bars][2] == 0
    assert rmse.bars[1].height == pytest.approx(86)  # the largest fills the chart
    assert rmse.bars[0].height == pytest.approx(43)
    assert r2.bars[0].height == pytest.approx(86)
    assert [b.label for b in r2.bars] == ["v1", "v2", "v3"]
    assert all(b.y + b.height == pytest.approx(90) for b in rmse.bars)


def test_lineage_reads_from_inputs_to_users() -> None:
    nodes = [
        {"id": "m", "kind": "model_version", "model": "churn", "version": 3},
        {"id": "d", "kind": "dataset_version", "dataset": "events", "version": 7},
        {"id": "j", "kind": "job", "job_id": "0123456789"},
        {"id": "dep", "kind": "deployment", "label": "api/primary"},
    ]
    edges = [
        {"from": "m", "to": "j", "relation": "produced_by"},
        {"from": "m", "to": "d", "relation": "trained_on"},
        {"from": "dep", "to": "m", "relation": "serves"},
        {"from": "m", "to": "missing", "relation": "ignored"},
    ]
    layout = layout_lineage(nodes, edges)
    x = {n.id: n.x for n in layout.nodes}
    assert x["d"] < x["j"] < x["m"] < x["dep"]
    assert {n.label for n in layout.nodes} == {
        "churn v3",
        "events v7",
        "job 01234567",
        "api/primary",
    }
    assert len(layout.edges) == 3
    assert all(e.x1 < e.x2 for e in layout.edges)  # every line runs left to right


def test_intervals_share_one_axis_and_skip_rows_without_an_estimate() -> None:
    rows, low, high = intervals(
        [("a", 0.5, 0.6, 0.7), ("b", 0.6, 0.8, 1.0), ("c", None, None, None)]
    )
    assert (low, high) == (0.5, 1.0)
    assert [r.label for r in rows] == ["a", "b"]
    assert rows[0].low == 0
    assert rows[1].high == 300
    assert rows[0].point == pytest.approx(60)


def _variants() -> list[dict[str, object]]:
    return [
        {
            "name": "primary",
            "model": "m",
            "version": 1,
            "alias": None,
            "weight": 90,
            "shadow": False,
        },
        {
            "name": "candidate",
            "model": "m",
            "version": None,
            "alias": "challenger",
            "weight": 10,
            "shadow": False,
        },
        {"name": "spy", "model": "m", "version": 3, "alias": None, "weight": 5, "shadow": True},
    ]


def test_a_canary_step_gives_the_variant_its_share_and_keeps_shadows() -> None:
    out = {v["name"]: v for v in canary_weights(_variants(), "candidate", 25)}
    assert out["candidate"]["weight"] == 25
    assert out["primary"]["weight"] == 75
    assert out["spy"] == {"name": "spy", "model": "m", "version": 3, "weight": 5, "shadow": True}
    # The alias target is sent back as an alias, not a pinned version.
    assert out["candidate"]["alias"] == "challenger"
    assert "version" not in out["candidate"]
    full = {v["name"]: v["weight"] for v in canary_weights(_variants(), "candidate", 100)}
    assert full == {"primary": 0, "candidate": 100, "spy": 5}
    with pytest.raises(ValueError, match="live traffic"):
        canary_weights(_variants(), "spy", 50)


def test_traffic_shares_count_live_variants_only() -> None:
    assert traffic_shares(_variants()) == {"primary": 90.0, "candidate": 10.0, "spy": 0.0}


def test_sort_links_offer_every_metric_and_reverse_the_current_one() -> None:
    versions = [{"metrics": {"rmse": 1.0}}, {"metrics": {"mae": 2.0, "rmse": 3.0}}]
    assert sort_keys(versions) == ["version", "created_at", "metrics.mae", "metrics.rmse"]
    assert toggled("metrics.rmse", "metrics.rmse") == "-metrics.rmse"
    assert toggled("-metrics.rmse", "metrics.rmse") == "metrics.rmse"
    assert toggled("version", "metrics.rmse") == "metrics.rmse"
