"""Fails when line coverage is below the overall floor or any service package is below its
floor. Reads the combined ``.coverage`` data through coverage's JSON report."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

SERVICES = (
    "kit",
    "contracts",
    "identity",
    "data",
    "workflows",
    "training",
    "registry",
    "serving",
    "tracking",
    "gateway",
)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--overall", type=float, default=85.0)
    parser.add_argument("--per-service", type=float, default=80.0)
    args = parser.parse_args()
    subprocess.run(
        [sys.executable, "-m", "coverage", "json", "-q", "-o", "coverage.json"], check=True
    )
    data = json.loads(Path("coverage.json").read_text())
    covered: dict[str, int] = defaultdict(int)
    statements: dict[str, int] = defaultdict(int)
    for path, info in data["files"].items():
        parts = Path(path).parts
        if "armillary" not in parts:
            continue
        rest = parts[parts.index("armillary") + 1 :]
        package = rest[0] if len(rest) > 1 else "(root)"
        covered[package] += info["summary"]["covered_lines"]
        statements[package] += info["summary"]["num_statements"]
    failed = False
    overall = 100.0 * sum(covered.values()) / max(1, sum(statements.values()))
    print(f"overall line coverage: {overall:.1f}% (floor {args.overall}%)")
    if overall < args.overall:
        failed = True
    for package in sorted(statements):
        pct = 100.0 * covered[package] / max(1, statements[package])
        floor = args.per_service if package in SERVICES else 0.0
        mark = "FAIL" if pct < floor else "ok"
        print(
            f"  {package:<12} {pct:5.1f}%  ({covered[package]}/{statements[package]} lines)  {mark}"
        )
        failed = failed or pct < floor
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
