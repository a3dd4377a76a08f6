"""Longest test files first, so that no slow file starts while the other workers run dry.

`make test` distributes whole files over the xdist workers (`--dist loadfile`). By default
xdist queues the files with the most tests first, which puts a file of three 100-second
tests behind hundreds of quick unit tests, at the very end of the run. Here the files are
queued by their measured time instead (`tests/durations.json`), and the run is started with
`--no-loadscope-reorder` so xdist keeps that order.

`ARMILLARY_TEST_DURATIONS_OUT=path` writes this run's time per file (set-up, call and
tear-down of its tests) to refresh that record; `make test` does it, and prints the slowest.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import pytest

RECORD = Path(__file__).with_name("durations.json")
# A file with no record yet: guessed from where it lives (real processes cost most).
GUESS_SECONDS = {
    "tests/faults/": 60.0,
    "tests/browser/": 90.0,
    "tests/e2e/": 30.0,
    "tests/integration/": 10.0,
}
DEFAULT_GUESS = 1.0

_spent: defaultdict[str, float] = defaultdict(float)


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def _expected(record: dict[str, float], path: str) -> float:
    if path in record:
        return record[path]
    for prefix, seconds in GUESS_SECONDS.items():
        if path.startswith(prefix):
            return seconds
    return DEFAULT_GUESS


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    try:
        record = {str(k): float(v) for k, v in json.loads(RECORD.read_text()).items()}
    except (OSError, ValueError):
        record = {}
    position = {id(item): index for index, item in enumerate(items)}
    items.sort(key=lambda item: (-_expected(record, _file_of(item.nodeid)), position[id(item)]))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _spent[_file_of(report.nodeid)] += report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    out = os.environ.get("ARMILLARY_TEST_DURATIONS_OUT")
    # Workers see only their own files; the controller sees every report.
    if not out or hasattr(session.config, "workerinput") or not _spent:
        return
    measured = {path: round(seconds, 1) for path, seconds in sorted(_spent.items())}
    Path(out).write_text(json.dumps(measured, indent=1) + "\n")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    reporter.ensure_newline()
    reporter.write_line(f"=== slowest test files (all of them in {out})")
    for path, seconds in sorted(measured.items(), key=lambda kv: -kv[1])[:15]:
        reporter.write_line(f"{seconds:8.1f} s  {path}")
