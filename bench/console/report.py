"""The console benchmark's results as a Markdown section."""

from __future__ import annotations

from typing import Any

from pages import TARGET_MS as PAGE_TARGET_MS

MET = {True: "met", False: "**not met**"}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _load(values: list[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def markdown(results: dict[str, Any], title: str) -> str:
    code, load = results["code"], results["load_average"]
    lines = [
        f"### {title} (run of {results['started']}, {results['seconds']:.0f} s, "
        f"commit {code['commit']}{', src/ modified' if code['src_dirty'] else ''})",
        "",
        f"Load average (1/5/15 min): {_load(load['start'])} at the start, "
        f"{_load(load['measuring'])} when the pages were measured, {_load(load['end'])} at "
        f"the end; {results['machine']['cpus']} cores. Seeding took "
        f"{results['seed_seconds']['total']:.0f} s (the 200-task job ran in "
        f"{results['seed_seconds']['dag_job']:.1f} s).",
        "",
        f"Server time, {results['args']['requests']} rounds of one request to every page, one "
        f"request at a time, after {results['args']['warmup']} warm-up requests per page "
        f"(target p50 ≤ {PAGE_TARGET_MS:g} ms, judged on "
        "the server's own time):",
        "",
        "| page | server p50 ms | server p95 ms | client p50 ms | client p95 ms | "
        "API calls | API ms | HTML KB | target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in results["pages"]:
        lines.append(
            f"| {p['name']} | {_ms(p.get('server_p50_ms'))} | {_ms(p.get('server_p95_ms'))} "
            f"| {_ms(p['client_p50_ms'])} | {_ms(p['client_p95_ms'])} "
            f"| {p['api_calls_per_page']:.0f} | {p['api_ms_per_page']:.1f} "
            f"| {p['html_bytes'] / 1000:,.1f} | {MET[p['target_met']]} |"
        )
    met = sum(p["target_met"] for p in results["pages"])
    lines += ["", f"{met} of {len(results['pages'])} pages meet the target.", ""]
    painted = results["paint"]
    if "skipped" in painted:
        lines += [f"First paint: not measured ({painted['skipped']}).", ""]
    else:
        m = painted["median_ms"]
        lines += [
            f"Job page (200-task DAG, {painted['dag_nodes']} nodes drawn, "
            f"{painted['html_bytes'] / 1000:,.0f} KB of HTML) in Chromium {painted['chromium']}, "
            f"median of {painted['loads']} cold loads (ms from navigation start):",
            "",
            "| TTFB | HTML received | first paint | first contentful paint | "
            "largest contentful paint | DAG visible | DOMContentLoaded | load | target |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
            f"| {_ms(m['ttfb'])} | {_ms(m['response_end'])} | {_ms(m['fp'])} | {_ms(m['fcp'])} "
            f"| {_ms(m['lcp'])} | {_ms(m['dag_visible'])} | {_ms(m['dom_content_loaded'])} "
            f"| {_ms(m['load'])} | FCP ≤ {painted['target_ms']:g} ms: "
            f"{MET[painted['target_met']]} |",
            "",
        ]
    js = results["javascript"]
    lines += [
        "JavaScript the pages load (target ≤ 150 KB compressed in total):",
        "",
        "| script | raw bytes | gzip -9 bytes | as served (bytes, encoding) |",
        "|---|---:|---:|---|",
    ]
    for s in js["scripts"]:
        lines.append(
            f"| `{s['url']}` | {s['raw_bytes']:,} | {s['gzip9_bytes']:,} "
            f"| {s['served_bytes']:,}, {s['served_encoding']} |"
        )
    lines += [
        f"| **total** | {js['total_raw_bytes']:,} | {js['total_gzip9_bytes']:,} "
        f"| {js['total_served_bytes']:,} |",
        "",
        f"Compressed total {js['total_gzip9_bytes'] / 1000:.1f} KB: {MET[js['target_met']]}.",
        "",
    ]
    return "\n".join(lines)
