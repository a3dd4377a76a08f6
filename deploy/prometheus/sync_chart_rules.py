"""Copies the Prometheus rules (deploy/prometheus/rules/*.rules.yml, the one source) into
the Helm chart, whose PrometheusRule template reads them (a chart reads only files inside
it). ``--check`` changes nothing and fails when a copy differs, is missing or is extra.

    .venv/bin/python deploy/prometheus/sync_chart_rules.py [--check]

tests/deploy/test_helm_chart.py fails on a stale copy too.
"""

from __future__ import annotations

import sys
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[1]
SOURCE = DEPLOY / "prometheus" / "rules"
CHART_COPY = DEPLOY / "helm" / "armillary" / "files" / "prometheus-rules"
PATTERN = "*.rules.yml"


def stale() -> list[str]:
    """What differs between the rule files and the chart's copies (empty: in sync)."""
    sources = {path.name: path.read_bytes() for path in SOURCE.glob(PATTERN)}
    copies = {path.name: path.read_bytes() for path in CHART_COPY.glob(PATTERN)}
    return sorted(
        name for name in sources.keys() | copies.keys() if sources.get(name) != copies.get(name)
    )


def sync() -> None:
    CHART_COPY.mkdir(parents=True, exist_ok=True)
    for path in CHART_COPY.glob(PATTERN):
        if not (SOURCE / path.name).exists():
            path.unlink()
    for path in SOURCE.glob(PATTERN):
        (CHART_COPY / path.name).write_bytes(path.read_bytes())


def main(argv: list[str]) -> int:
    if "--check" in argv:
        differing = stale()
        if differing:
            print("chart rule copies out of date (run deploy/prometheus/sync_chart_rules.py):")
            print("\n".join(f"  {name}" for name in differing))
            return 1
        return 0
    sync()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
