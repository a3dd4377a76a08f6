"""The console's JavaScript: every script its pages load, raw, gzip -9, and as the server
sends it to a browser that accepts compression."""

from __future__ import annotations

import gzip
import re
from typing import Any

import httpx

TARGET_KB = 150.0
_SCRIPT = re.compile(r"<script\b[^>]*\bsrc=\"([^\"]+)\"", re.IGNORECASE)


def script_urls(client: httpx.Client, page_urls: list[str]) -> list[str]:
    found: list[str] = []
    for url in page_urls:
        html = client.get(url, headers={"HX-Request": "false"}).text
        for src in _SCRIPT.findall(html):
            if src not in found:
                found.append(src)
    return found


def served_bytes(client: httpx.Client, url: str) -> tuple[int, str]:
    """Bytes on the wire (body only) and the content encoding, for a browser's
    Accept-Encoding."""
    headers = {"Accept-Encoding": "gzip, deflate, br, zstd"}
    with client.stream("GET", url, headers=headers) as response:
        response.raise_for_status()
        wire = sum(len(chunk) for chunk in response.iter_raw())
        return wire, response.headers.get("content-encoding", "identity")


def measure(base_url: str, cookies: dict[str, str], page_urls: list[str]) -> dict[str, Any]:
    with httpx.Client(base_url=base_url, cookies=cookies, timeout=30) as client:
        scripts = []
        for url in script_urls(client, page_urls):
            raw = client.get(url, headers={"Accept-Encoding": "identity"})
            raw.raise_for_status()
            wire, encoding = served_bytes(client, url)
            scripts.append(
                {
                    "url": url,
                    "raw_bytes": len(raw.content),
                    "gzip9_bytes": len(gzip.compress(raw.content, compresslevel=9)),
                    "served_bytes": wire,
                    "served_encoding": encoding,
                }
            )
    total_gzip = sum(s["gzip9_bytes"] for s in scripts)
    return {
        "scripts": scripts,
        "pages_scanned": len(page_urls),
        "total_raw_bytes": sum(s["raw_bytes"] for s in scripts),
        "total_gzip9_bytes": total_gzip,
        "total_served_bytes": sum(s["served_bytes"] for s in scripts),
        "target_kb": TARGET_KB,
        "target_met": total_gzip / 1000 <= TARGET_KB,
    }
