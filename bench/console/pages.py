"""Server time of each console page: GETs with a signed-in cookie over loopback, one at a
time, timed by the client (an upper bound of the server's time) and by the server's own
request log (`duration_ms` of the page's `request` line, and of the in-process API calls it
made)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

TARGET_MS = 50.0


@dataclass(frozen=True)
class Page:
    name: str
    url: str
    admin: bool = False
    fragment: bool = False  # an htmx live fragment, asked for as the poller asks


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def pages(project: str, dag_job: str, model: str, versions: int) -> list[Page]:
    p = f"/ui/projects/{project}"
    m = f"{p}/models/{model}"
    return [
        Page("projects", "/ui/projects"),
        Page("project overview", p),
        Page("jobs (1,000)", f"{p}/jobs"),
        Page("jobs, status=failed", f"{p}/jobs?status=failed"),
        Page("job (200-task DAG)", f"{p}/jobs/{dag_job}"),
        Page("job live fragment (poll)", f"{p}/jobs/{dag_job}/live", fragment=True),
        Page("workflows", f"{p}/workflows"),
        Page("workflow (200-task DAG)", f"{p}/workflows/bench-dag"),
        Page("models", f"{p}/models"),
        Page("model (100 versions)", m),
        Page("model, by a metric", f"{m}?order_by=-metrics.accuracy"),
        Page("compare (3 versions)", f"{m}/compare?v=1&v={versions // 2}&v={versions}"),
        Page("model version", f"{m}/versions/{versions}"),
        Page("alias", f"{m}/aliases/champion"),
        Page("datasets", f"{p}/datasets"),
        Page("dataset (profile)", f"{p}/datasets/customers"),
        Page("deployments", f"{p}/deployments"),
        Page("deployment", f"{p}/deployments/churn-api"),
        Page("alerts", f"{p}/alerts"),
        Page("admin: users", "/ui/admin/users", admin=True),
        Page("admin: audit", "/ui/admin/audit", admin=True),
        Page("admin: keys", "/ui/admin/keys", admin=True),
        Page("admin: health", "/ui/admin/health", admin=True),
    ]


def request_lines(log: Path, start: int) -> tuple[list[dict[str, Any]], int]:
    """The server's `request` log records written after byte ``start``, and the new end."""
    with log.open("rb") as f:
        f.seek(start)
        data = f.read()
    records = []
    for line in data.splitlines():
        if b'"request"' not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "request":
            records.append(record)
    return records, start + len(data)


def _get(client: httpx.Client, page: Page) -> httpx.Response:
    headers = {"HX-Request": "true"} if page.fragment else {}
    response = client.get(page.url, headers=headers)
    if response.status_code != 200:
        raise SystemExit(f"{page.name}: {page.url} answered {response.status_code}")
    return response


def api_calls(client: httpx.Client, page: Page, log: Path, requests: int) -> dict[str, float]:
    """The in-process API calls one page makes (each a `request` line of its own), from
    ``requests`` sequential loads while nothing else asks this server anything."""
    time.sleep(0.3)  # the log's buffer reaches the file
    _, offset = request_lines(log, 0)
    for _ in range(requests):
        _get(client, page)
    time.sleep(0.3)
    records, _ = request_lines(log, offset)
    api = [r for r in records if str(r.get("path", "")).startswith("/api/")]
    return {
        "api_calls_per_page": len(api) / requests,
        "api_ms_per_page": sum(float(r["duration_ms"]) for r in api) / requests,
    }


def measure_all(
    base_url: str,
    cookies: dict[str, dict[str, str]],
    listed: list[Page],
    log: Path,
    warmup: int,
    requests: int,
) -> list[dict[str, Any]]:
    """Every page once a round, ``requests`` rounds after ``warmup``, so that a burst of other
    work on the machine falls on all pages alike. The server's time of each request is its
    `request` log line, found by the X-Request-Id the response carries."""
    clients = {
        role: httpx.Client(base_url=base_url, cookies=jar, timeout=60, follow_redirects=False)
        for role, jar in cookies.items()
    }

    def client_of(page: Page) -> httpx.Client:
        return clients["admin" if page.admin else "scientist"]

    try:
        calls = {page.name: api_calls(client_of(page), page, log, warmup) for page in listed}
        time.sleep(0.3)
        _, offset = request_lines(log, 0)
        client_ms: dict[str, list[float]] = {page.name: [] for page in listed}
        ids: dict[str, str] = {}
        sizes: dict[str, int] = {}
        for _ in range(requests):
            for page in listed:
                began = time.perf_counter()
                response = _get(client_of(page), page)
                client_ms[page.name].append((time.perf_counter() - began) * 1000)
                ids[response.headers["x-request-id"]] = page.name
                sizes[page.name] = len(response.content)
        time.sleep(0.5)
        records, _ = request_lines(log, offset)
    finally:
        for client in clients.values():
            client.close()
    server_ms: dict[str, list[float]] = {page.name: [] for page in listed}
    for record in records:
        name = ids.get(str(record.get("request_id")))
        if name is not None:
            server_ms[name].append(float(record["duration_ms"]))
    results = []
    for page in listed:
        timed = client_ms[page.name]
        result: dict[str, Any] = {
            "name": page.name,
            "url": page.url,
            "requests": requests,
            "client_p50_ms": percentile(timed, 50),
            "client_p95_ms": percentile(timed, 95),
            "html_bytes": sizes[page.name],
            **calls[page.name],
        }
        if len(server_ms[page.name]) == requests:
            result["server_p50_ms"] = percentile(server_ms[page.name], 50)
            result["server_p95_ms"] = percentile(server_ms[page.name], 95)
        judged = result.get("server_p50_ms", result["client_p50_ms"])
        result["target_met"] = judged <= TARGET_MS
        print(
            f"  {page.name:28} client p50 {result['client_p50_ms']:7.1f} ms "
            f"p95 {result['client_p95_ms']:7.1f}  server p50 "
            f"{result.get('server_p50_ms', float('nan')):7.1f}  "
            f"API calls {result['api_calls_per_page']:.1f}",
            flush=True,
        )
        results.append(result)
    return results
