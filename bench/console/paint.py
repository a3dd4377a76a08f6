"""The job page's first meaningful paint in Debian's Chromium, driven by Playwright: each load
in a new browser context (empty cache, the session cookie set), timed by the page's own
Paint Timing and Largest Contentful Paint entries, and by when the DAG's SVG is visible."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
TARGET_MS = 1000.0

# Runs in the page (Playwright's evaluate is not subject to the page's CSP).
TIMINGS = """async () => {
  const nav = performance.getEntriesByType('navigation')[0];
  const paint = Object.fromEntries(
    performance.getEntriesByType('paint').map(e => [e.name, e.startTime]));
  const lcp = await new Promise(resolve => {
    new PerformanceObserver(list => {
      const all = list.getEntries();
      resolve(all[all.length - 1].startTime);
    }).observe({type: 'largest-contentful-paint', buffered: true});
    setTimeout(() => resolve(null), 2000);
  });
  const scripts = performance.getEntriesByType('resource')
    .filter(e => e.initiatorType === 'script')
    .map(e => ({name: e.name, transfer: e.transferSize, encoded: e.encodedBodySize,
                decoded: e.decodedBodySize}));
  return {
    ttfb: nav.responseStart, response_end: nav.responseEnd,
    dom_content_loaded: nav.domContentLoadedEventEnd, load: nav.loadEventEnd,
    fcp: paint['first-contentful-paint'] ?? null, fp: paint['first-paint'] ?? null,
    lcp: lcp, html_bytes: nav.encodedBodySize, scripts: scripts,
  };
}"""


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def measure(base_url: str, cookies: dict[str, str], job_url: str, loads: int) -> dict[str, Any]:
    if not Path(CHROMIUM).exists():
        return {"skipped": f"{CHROMIUM} is missing (scripts/browser-prereqs.sh installs it)"}
    from playwright.sync_api import sync_playwright

    jar = [{"name": k, "value": v, "url": f"{base_url}/ui"} for k, v in cookies.items()]
    rows: list[dict[str, Any]] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        version = browser.version
        try:
            for i in range(loads + 1):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                context.add_cookies(jar)
                page = context.new_page()
                began = time.perf_counter()
                page.goto(base_url + job_url, wait_until="commit")
                page.wait_for_selector("svg.dag", state="visible")
                dag_client = (time.perf_counter() - began) * 1000
                dag_page = page.evaluate("performance.now()")
                page.wait_for_load_state("load")
                row = page.evaluate(TIMINGS)
                row.update(dag_visible=dag_page, dag_visible_client=dag_client)
                row["nodes"] = page.locator("svg.dag g.dag-node").count()
                context.close()
                if i:  # the first load warms the server and the browser process
                    rows.append(row)
        finally:
            browser.close()
    keys = ("ttfb", "response_end", "fp", "fcp", "lcp", "dom_content_loaded", "load")
    medians = {k: _median(rows, k) for k in (*keys, "dag_visible", "dag_visible_client")}
    fcp = medians["fcp"]
    return {
        "chromium": version,
        "loads": len(rows),
        "median_ms": medians,
        "max_fcp_ms": max((r["fcp"] for r in rows if r.get("fcp") is not None), default=None),
        "dag_nodes": rows[-1]["nodes"] if rows else 0,
        "html_bytes": rows[-1]["html_bytes"] if rows else 0,
        "scripts": rows[-1]["scripts"] if rows else [],
        "target_ms": TARGET_MS,
        "target_met": fcp is not None and fcp <= TARGET_MS,
        "rows": rows,
    }
