"""Benchmark (issue 19): the console's pages on a project of 1,000 jobs, 100 model versions
and a 200-task DAG.

    .venv/bin/python bench/console/run.py [--requests 50] [--warmup 5] [--loads 10]

Platform: `armillary up --workers 2` on PostgreSQL (database armillary_bench_console,
recreated and dropped), on a free loopback port, log level INFO (its `request` log lines carry
each request's server-side duration), access tokens of an hour, the API's rate budgets raised
(as bench/auth_get does). The project is seeded through the public API (bench/console/seed.py):
18 of its jobs, the 200-task one among them, really run on the platform's scheduler and workers;
the other 982 are copies of those rows written into the database (bench/console/clone.py).

Measured (targets of issue 19; no peer runs here: no other console serves these pages):

  server time   each page of docs/console.md, REQUESTS sequential GETs after WARMUP, with the
                cookie of a form sign-in; p50/p95 by the client and from the server's log
                (target: p50 <= 50 ms)
  first paint   the job page of the 200-task DAG in Debian's Chromium through Playwright, a new
                browser context (cold cache) for each of LOADS loads after one warm-up: first
                contentful paint, largest contentful paint, the DAG drawn (target: <= 1 s)
  JavaScript    every script the pages load, raw, gzip -9 and as served (target: <= 150 KB
                compressed in total)

Results: bench/results/console.json and console.md (also printed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform as machine
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent / "workflows"))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import armillary_graphs  # noqa: E402
import paint  # noqa: E402
import report  # noqa: E402
import scripts  # noqa: E402
from armillary_graphs import (  # noqa: E402
    ADMIN_EMAIL,
    HIGH_LIMIT,
    LOGS,
    SCIENTIST_EMAIL,
    BenchFailure,
    Platform,
    _ok,
)
from pages import measure_all, pages  # noqa: E402
from seed import MODEL, PROJECT, seed  # noqa: E402

RESULTS = REPO / "bench" / "results"

# Platform (bench/workflows) reads these module names: this benchmark's own database.
armillary_graphs.DB_NAME = "armillary_bench_console"
armillary_graphs.PG_URL = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{armillary_graphs.DB_NAME}"


class ConsolePlatform(Platform):
    """`armillary up --workers 2` on PostgreSQL, logging each request's duration."""

    def __init__(self, src: Path) -> None:
        super().__init__("postgres", 2)
        self.log_path = LOGS / "console-armillary.log"
        self.src = src

    def env(self) -> dict[str, str]:
        return {
            **super().env(),
            # The code measured (this checkout's, unless --src says otherwise), whatever the
            # virtual environment was installed from.
            "PYTHONPATH": str(self.src),
            "ARMILLARY_LOG_LEVEL": "INFO",
            "ARMILLARY_ACCESS_TOKEN_TTL_SECONDS": "3600",
            "ARMILLARY_RATE_LIMIT_TRACKING": HIGH_LIMIT,
        }


def bearer(http: httpx.Client, email: str, password: str) -> dict[str, str]:
    form = {"username": email, "password": password}
    tokens = _ok(http.post("/api/v1/auth/token", data=form), {200}, f"login {email}")
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def sign_in(base_url: str, email: str, password: str) -> dict[str, str]:
    """The console's cookies after signing in through its form, as a browser does."""
    with httpx.Client(base_url=base_url, timeout=30) as browser:
        browser.get("/ui/login").raise_for_status()
        form = {
            "email": email,
            "password": password,
            "next": "/ui/projects",
            "csrf_token": browser.cookies["armillary_csrf"],
        }
        done = browser.post("/ui/login", data=form, headers={"Origin": base_url})
        if done.status_code != 303 or "armillary_session" not in browser.cookies:
            raise BenchFailure(f"console sign-in: HTTP {done.status_code}: {done.text[:500]}")
        return {name: browser.cookies[name] for name in ("armillary_session", "armillary_csrf")}


def commit(src: Path) -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=src, capture_output=True, text=True)
        return done.stdout.strip()

    return {
        "src": str(src),
        "commit": git("rev-parse", "--short", "HEAD"),
        "src_dirty": bool(git("status", "--porcelain", ".")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--loads", type=int, default=10)
    parser.add_argument("--title", default="Results")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="write console.md again from bench/results/console.json, measuring nothing",
    )
    parser.add_argument(
        "--src",
        type=Path,
        default=REPO / "src",
        help="the platform code to measure (a before/after: another checkout's src)",
    )
    parser.add_argument(
        "--hold",
        type=float,
        default=0,
        help="keep the seeded platform up this many seconds after measuring (to profile it); "
        "its URL and cookies go to bench/results/console-session.json",
    )
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        saved = json.loads((RESULTS / "console.json").read_text())
        text = report.markdown(saved, args.title)
        (RESULTS / "console.md").write_text(text)
        print(text)
        return
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    with (
        ConsolePlatform(args.src.resolve()) as platform,
        httpx.Client(base_url=platform.url, timeout=120) as http,
    ):
        admin = bearer(http, ADMIN_EMAIL, platform.admin_password)
        user = {
            "email": SCIENTIST_EMAIL,
            "name": "Bench Scientist",
            "role": "data_scientist",
            "password": platform.scientist_password,
        }
        _ok(http.post("/api/v1/users", json=user, headers=admin), {201}, "create user")
        scientist = bearer(http, SCIENTIST_EMAIL, platform.scientist_password)
        project = {"slug": PROJECT, "name": "Console benchmark"}
        _ok(http.post("/api/v1/projects", json=project, headers=scientist), {201}, "project")
        seeded = seed(http, scientist, armillary_graphs.PG_URL.replace("+asyncpg", ""))
        cookies = {
            "scientist": sign_in(platform.url, SCIENTIST_EMAIL, platform.scientist_password),
            "admin": sign_in(platform.url, ADMIN_EMAIL, platform.admin_password),
        }
        load_measured = os.getloadavg()
        print("server time per page", file=sys.stderr, flush=True)
        listed = pages(PROJECT, seeded.dag_job, MODEL, seeded.versions)
        timed = measure_all(
            platform.url, cookies, listed, platform.log_path, args.warmup, args.requests
        )
        print("JavaScript", file=sys.stderr, flush=True)
        js = scripts.measure(platform.url, cookies["scientist"], [p.url for p in listed[:20]])
        print("first paint in Chromium", file=sys.stderr, flush=True)
        job_url = next(p.url for p in listed if p.name.startswith("job ("))
        painted = paint.measure(platform.url, cookies["scientist"], job_url, args.loads)
        load_after = os.getloadavg()
        if args.hold:
            session = {"url": platform.url, "cookies": cookies, "pages": [p.url for p in listed]}
            (RESULTS / "console-session.json").write_text(json.dumps(session, indent=2))
            print(f"holding the platform for {args.hold:.0f} s", file=sys.stderr, flush=True)
            time.sleep(args.hold)
    results: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "seconds": (datetime.now(UTC) - started).total_seconds(),
        "machine": {"cpus": os.cpu_count(), "python": machine.python_version()},
        "code": commit(args.src.resolve()),
        "load_average": {"start": load_before, "measuring": load_measured, "end": load_after},
        "args": vars(args),
        "seed_seconds": seeded.seconds,
        "pages": timed,
        "javascript": js,
        "paint": painted,
    }
    (RESULTS / "console.json").write_text(json.dumps(results, indent=2, default=str))
    text = report.markdown(results, args.title)
    (RESULTS / "console.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
