"""The load test's SLO checker (bench/load/slo.py) over Locust's stats CSV: a run within every
threshold passes, and each way of breaking one (a slow p95 or p99, errors in one request type
or overall, a request type that got no traffic) fails it, from the command line too."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

SLO_PATH = Path(__file__).resolve().parents[3] / "bench" / "load" / "slo.py"

HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
    "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
)
THRESHOLDS = {
    "max_error_rate": 0.01,
    "requests": {
        "POST /auth/token": {"p95": 1500, "p99": 3000},
        "POST /projects/[p]/deployments/[d]/predict": {"p95": 300, "p99": 600},
    },
}


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("load_slo", SLO_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["load_slo"] = module
    spec.loader.exec_module(module)
    return module


slo = _load()


def line(kind: str, name: str, count: int, failures: int, p95: str, p99: str) -> str:
    # The columns Locust writes, with the percentiles that matter here in place.
    return (
        f'{kind},"{name}",{count},{failures},40,45.2,3.1,900,120,10.5,0.0,'
        f"40,50,60,70,80,{p95},{p95},{p99},{p99},{p99},{p99}"
    )


def stats_csv(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "load_stats.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def healthy_rows() -> list[str]:
    rows = [
        line("POST", "POST /auth/token", 50, 0, "900", "1400"),
        line("POST", "POST /projects/[p]/deployments/[d]/predict", 5000, 10, "120", "250"),
    ]
    return [*rows, line("", "Aggregated", 5050, 10, "300", "900")]


def test_a_run_within_every_threshold_passes(tmp_path: Path) -> None:
    rows = slo.read_stats(stats_csv(tmp_path, *healthy_rows()))
    assert rows["POST /auth/token"].p95 == 900
    assert rows["Aggregated"].requests == 5050
    assert slo.violations(rows, THRESHOLDS) == []


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        # predict's p95 over 300 ms
        (line("POST", "POST /projects/[p]/deployments/[d]/predict", 5000, 0, "310", "500"), "p95"),
        # predict's p99 over 600 ms
        (line("POST", "POST /projects/[p]/deployments/[d]/predict", 5000, 0, "200", "650"), "p99"),
        # 2 % of sign-ins failed
        (line("POST", "POST /auth/token", 50, 1, "900", "1400"), "error rate 2.00%"),
    ],
)
def test_each_broken_threshold_fails_the_run(tmp_path: Path, row: str, expected: str) -> None:
    name = row.split('"')[1]
    rows = [r for r in healthy_rows() if f'"{name}"' not in r]
    broken = slo.violations(slo.read_stats(stats_csv(tmp_path, row, *rows)), THRESHOLDS)
    assert len(broken) == 1, broken
    assert broken[0].startswith(name)
    assert expected in broken[0]


def test_errors_across_all_requests_fail_the_run(tmp_path: Path) -> None:
    rows = [*healthy_rows()[:-1], line("", "Aggregated", 5050, 80, "300", "900")]
    broken = slo.violations(slo.read_stats(stats_csv(tmp_path, *rows)), THRESHOLDS)
    assert broken == ["all requests: error rate 1.58% (80/5050) > 1.00%"]


def test_a_request_type_without_traffic_fails_the_run(tmp_path: Path) -> None:
    rows = healthy_rows()
    no_sign_in = [r for r in rows if '"POST /auth/token"' not in r]
    broken = slo.violations(slo.read_stats(stats_csv(tmp_path, *no_sign_in)), THRESHOLDS)
    assert broken == ["POST /auth/token: no request was made"]
    # Locust writes N/A percentiles for a type it named but never completed.
    empty = line("POST", "POST /auth/token", 0, 0, "N/A", "N/A")
    broken = slo.violations(slo.read_stats(stats_csv(tmp_path, empty, *no_sign_in)), THRESHOLDS)
    assert broken == ["POST /auth/token: no request was made"]


def test_the_command_line_exits_non_zero_when_broken(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    thresholds = tmp_path / "slo.json"
    thresholds.write_text(json.dumps(THRESHOLDS))
    good = stats_csv(tmp_path, *healthy_rows())
    assert slo.main([str(good), "--slo", str(thresholds)]) == 0
    assert "SLOs met" in capsys.readouterr().out
    slow = line("POST", "POST /auth/token", 50, 0, "2000", "2500")
    rows = [r for r in healthy_rows() if '"POST /auth/token"' not in r]
    bad = stats_csv(tmp_path, slow, *rows)
    assert slo.main([str(bad), "--slo", str(thresholds)]) == 1
    assert "SLO broken: POST /auth/token: p95 2000 ms > 1500 ms" in capsys.readouterr().out
