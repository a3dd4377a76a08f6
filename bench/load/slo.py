"""The load test's SLOs, checked over Locust's ``<prefix>_stats.csv`` (standard library only,
so both the project's .venv and the Locust venv import it).

    python bench/load/slo.py bench/results/load/load_stats.csv [--slo thresholds.json]

Exits 1 and prints each broken objective when any is broken, 0 otherwise. An objective is
broken when a request type's p95 or p99 (milliseconds) is over its threshold, when its error
rate or the whole run's is over ``max_error_rate``, or when a type with thresholds got no
request at all (a scenario that stopped exercising a path must not pass quietly).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AGGREGATED = "Aggregated"

#: p95/p99 in milliseconds per request type (the names the locustfile gives its requests),
#: for the distributed shape on one 2-core machine shared by the load generator. The log
#: follow stays open until the followed task has run, so its latency is a job's turnaround.
DEFAULT_SLO: dict[str, Any] = {
    "max_error_rate": 0.01,
    "requests": {
        "POST /auth/token": {"p95": 1500, "p99": 3000},
        "GET /projects": {"p95": 500, "p99": 1000},
        "GET /projects/[p]/datasets": {"p95": 500, "p99": 1000},
        "GET /projects/[p]/jobs": {"p95": 500, "p99": 1000},
        "GET /projects/[p]/models": {"p95": 500, "p99": 1000},
        "POST /projects/[p]/datasets/[d]/versions": {"p95": 3000, "p99": 6000},
        "POST /projects/[p]/workflows/[w]/jobs": {"p95": 1000, "p99": 2000},
        "GET /jobs/[j]": {"p95": 500, "p99": 1000},
        "queued -> started": {"p95": 20000, "p99": 40000},
        "GET /jobs/[j]/tasks/[t]/logs?follow": {"p95": 15000, "p99": 30000},
        "POST /projects/[p]/deployments/[d]/predict": {"p95": 300, "p99": 600},
    },
}


@dataclass(frozen=True)
class Row:
    name: str
    requests: int
    failures: int
    p50: float | None
    p95: float | None
    p99: float | None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None  # "N/A" when a type had no request


def read_stats(path: Path) -> dict[str, Row]:
    """Locust's stats CSV as rows by request name (the total under ``Aggregated``)."""
    rows: dict[str, Row] = {}
    with path.open(newline="") as handle:
        for record in csv.DictReader(handle):
            rows[record["Name"]] = Row(
                name=record["Name"],
                requests=int(record["Request Count"]),
                failures=int(record["Failure Count"]),
                p50=_number(record["50%"]),
                p95=_number(record["95%"]),
                p99=_number(record["99%"]),
            )
    return rows


def violations(rows: dict[str, Row], slo: dict[str, Any] | None = None) -> list[str]:
    """Every broken objective, one sentence each; empty when the run met them all."""
    slo = slo or DEFAULT_SLO
    max_errors = float(slo["max_error_rate"])
    broken: list[str] = []
    for name, limits in slo["requests"].items():
        row = rows.get(name)
        if row is None or row.requests == 0:
            broken.append(f"{name}: no request was made")
            continue
        for quantile in ("p95", "p99"):
            value = getattr(row, quantile)
            limit = limits.get(quantile)
            if limit is not None and (value is None or value > limit):
                shown = "n/a" if value is None else f"{value:.0f} ms"
                broken.append(f"{name}: {quantile} {shown} > {limit} ms")
    for row in rows.values():
        rate = row.failures / row.requests if row.requests else 0.0
        if rate > max_errors:
            what = "all requests" if row.name == AGGREGATED else row.name
            broken.append(
                f"{what}: error rate {rate:.2%} ({row.failures}/{row.requests}) > {max_errors:.2%}"
            )
    return broken


def load_slo(path: Path | None) -> dict[str, Any]:
    if path is None:
        return DEFAULT_SLO
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stats", type=Path, help="Locust's <prefix>_stats.csv")
    parser.add_argument("--slo", type=Path, help="thresholds as JSON (default: DEFAULT_SLO)")
    args = parser.parse_args(argv)
    broken = violations(read_stats(args.stats), load_slo(args.slo))
    for line in broken:
        print(f"SLO broken: {line}")
    if not broken:
        print("SLOs met")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
