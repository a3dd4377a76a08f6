"""The search grammar subset: what parses into which clauses, and what is refused."""

from __future__ import annotations

import pytest

from armillary.tracking.filters import Clause, OrderKey, parse_filter, parse_order_by
from armillary.tracking.wire_errors import InvalidParameter


def test_clauses_of_every_entity_and_comparator() -> None:
    parsed = parse_filter(
        "metrics.acc >= 0.9 and params.`learning rate` != '1e-3' AND tags.mlflow.parentRunId = "
        "\"abc\" AND attributes.status IN ('FINISHED', 'FAILED') and run_name ILIKE '%Trial%' "
        "AND attr.start_time < 17 and tag.\"a b\" NOT IN ('x') and metric.loss = -1.5e-2"
    )
    assert parsed == [
        Clause("metric", "acc", ">=", 0.9),
        Clause("param", "learning rate", "!=", "1e-3"),
        Clause("tag", "mlflow.parentRunId", "=", "abc"),
        Clause("attribute", "status", "IN", ("FINISHED", "FAILED")),
        Clause("attribute", "run_name", "ILIKE", "%Trial%"),
        Clause("attribute", "start_time", "<", 17.0),
        Clause("tag", "a b", "NOT IN", ("x",)),
        Clause("metric", "loss", "=", -0.015),
    ]


def test_quotes_escape_and_empty_filters() -> None:
    assert parse_filter("params.p = 'it\\'s'") == [Clause("param", "p", "=", "it's")]
    assert parse_filter(None) == []
    assert parse_filter("   ") == []


@pytest.mark.parametrize(
    "text",
    [
        "metrics.a > 1 OR metrics.b > 1",
        "(metrics.a > 1)",
        "metrics.a >",
        "metrics.a 1",
        "nonsense.a = 'x'",
        "params.a IN 'x'",
        "params.a IN (1, 2)",
        "params.a = 'x' params.b = 'y'",
        "params.a ~ 'x'",
    ],
)
def test_refused_filters(text: str) -> None:
    with pytest.raises(InvalidParameter):
        parse_filter(text)


def test_order_by() -> None:
    assert parse_order_by(["metrics.acc DESC", "params.lr", "start_time asc", "`name`"]) == [
        OrderKey("metric", "acc", ascending=False),
        OrderKey("param", "lr", ascending=True),
        OrderKey("attribute", "start_time", ascending=True),
        OrderKey("attribute", "name", ascending=True),
    ]
    with pytest.raises(InvalidParameter):
        parse_order_by(["metrics.acc DESC extra"])
