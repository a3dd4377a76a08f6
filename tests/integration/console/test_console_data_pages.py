"""Console slice 2a over the ASGI app (no browser): datasets (list, create, upload through
the console with its CSRF header, profile charts, quality reports, lineage, download), the
workflow graph and diff, and a job's DAG, logs, artifacts and re-run."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from tests.conftest import Api, auth
from tests.integration.console.test_console_pages import (
    ORIGIN,
    XSS,
    csrf_of,
    signed_in_client,
)

CSV = b"city,temp,label\nOslo,3.5,a\nRome,18.25,b\nLima,19.0,a\nCairo,25.5,a\n"
SPEC: dict[str, Any] = {
    "name": "chain",
    "parameters": {"rows": 1},
    "tasks": [
        {"name": "first", "type": "noop"},
        {"name": "second", "type": "noop", "needs": ["first"]},
        {"name": "third", "type": "noop", "needs": ["first"]},
        {"name": "last", "type": "noop", "needs": ["second", "third"]},
    ],
}


@pytest.fixture
async def scientist(api: Api) -> dict[str, Any]:
    return await api.create_user(await api.admin_token(), "data_scientist")


@pytest.fixture
async def browser(app: FastAPI, scientist: dict[str, Any]) -> AsyncIterator[httpx.AsyncClient]:
    async with signed_in_client(app, scientist["email"], scientist["password"]) as client:
        yield client


@pytest.fixture
async def project(api: Api, scientist: dict[str, Any]) -> dict[str, Any]:
    return await api.create_project(scientist["token"], "data")


async def upload(
    browser: httpx.AsyncClient, dataset: str, content: bytes = CSV, name: str = "cities.csv"
) -> httpx.Response:
    page = await browser.get(f"/ui/projects/data/datasets/{dataset}")
    return await browser.post(
        f"/ui/projects/data/datasets/{dataset}/versions",
        files={"file": (name, content, "text/csv")},
        headers={"Origin": ORIGIN, "X-CSRF-Token": csrf_of(page)},
    )


async def test_a_dataset_is_created_uploaded_profiled_and_downloaded_through_the_console(
    browser: httpx.AsyncClient, project: dict[str, Any]
) -> None:
    listing = await browser.get("/ui/projects/data/datasets")
    assert listing.status_code == 200
    assert "No datasets." in listing.text
    created = await browser.post(
        "/ui/projects/data/datasets",
        data={"name": "cities", "description": XSS, "csrf_token": csrf_of(listing)},
        headers={"Origin": ORIGIN},
    )
    assert created.status_code == 303
    assert created.headers["location"] == "/ui/projects/data/datasets/cities"

    sent = await upload(browser, "cities")
    assert sent.status_code == 200, sent.text
    assert sent.json() == {"version": 1, "url": "/ui/projects/data/datasets/cities?version=1"}

    page = await browser.get("/ui/projects/data/datasets/cities?version=1")
    assert page.status_code == 200
    assert XSS not in page.text  # the description is escaped
    assert "&lt;img src=x" in page.text
    # The schema, and a chart per column: a histogram of the numbers, top values of labels.
    assert re.search(r"<td>temp</td><td><code>Float64</code>", page.text)
    charts = re.findall(r'<svg class="bars" role="img" aria-label="([^"]+)"', page.text)
    assert any(c.startswith("histogram of temp: 3.5 to ") for c in charts), charts
    assert any("top values of label: a: 3, b: 1" in c for c in charts), charts
    assert "cities.csv" in page.text
    assert "No quality reports on this version." in page.text

    download = await browser.get("/ui/projects/data/datasets/cities/versions/1/download")
    assert download.status_code == 200
    assert download.content == CSV
    assert 'filename="cities-v1.csv"' in download.headers["content-disposition"]
    assert download.headers["x-content-type-options"] == "nosniff"
    for absent in ("9", "one", ".."):
        missing = await browser.get(f"/ui/projects/data/datasets/cities/versions/{absent}/download")
        assert missing.status_code == 404, absent


async def test_an_upload_needs_the_csrf_header_and_reports_the_apis_reason(
    browser: httpx.AsyncClient, api: Api, scientist: dict[str, Any], project: dict[str, Any]
) -> None:
    made = await api.client.post(
        "/api/v1/projects/data/datasets", json={"name": "raw"}, headers=auth(scientist["token"])
    )
    assert made.status_code == 201
    forged = await browser.post(
        "/ui/projects/data/datasets/raw/versions",
        files={"file": ("x.csv", CSV, "text/csv")},
        headers={"Origin": ORIGIN},
    )
    assert forged.status_code == 403
    cross = await browser.post(
        "/ui/projects/data/datasets/raw/versions",
        files={"file": ("x.csv", CSV, "text/csv")},
        headers={"Origin": "https://evil.example", "X-CSRF-Token": "anything"},
    )
    assert cross.status_code == 403
    versions = await api.client.get(
        "/api/v1/projects/data/datasets/raw/versions", headers=auth(scientist["token"])
    )
    assert versions.json()["total"] == 0

    refused = await upload(browser, "raw", b"\x00\x01 not a table", "x.exe")
    assert 400 <= refused.status_code < 500
    assert refused.json()["detail"]  # the API's reason, for the page to show
    unknown = await upload(browser, "nope")
    assert unknown.status_code == 404


async def test_a_version_shows_its_quality_reports_and_lineage(
    browser: httpx.AsyncClient, api: Api, scientist: dict[str, Any], project: dict[str, Any]
) -> None:
    token = scientist["token"]
    await api.client.post(
        "/api/v1/projects/data/datasets", json={"name": "scored"}, headers=auth(token)
    )
    sent = await api.client.post(
        "/api/v1/projects/data/datasets/scored/versions",
        files={"file": ("s.csv", CSV, "text/csv")},
        data={"lineage": '{"source": "' + XSS.replace('"', "") + '"}'},
        headers=auth(token),
    )
    assert sent.status_code == 201, sent.text
    for passed, score in ((False, 0.25), (True, 0.875)):
        report = await api.client.put(
            "/api/v1/projects/data/datasets/scored/versions/1/quality",
            json={"passed": passed, "score": score, "checks": []},
            headers=auth(token),
        )
        assert report.status_code == 201, report.text
    page = await browser.get("/ui/projects/data/datasets/scored")
    assert page.status_code == 200
    quality = page.text.split('id="quality"')[1].split("</section>")[0]
    assert quality.index("passed") < quality.index("failed")  # newest first
    assert "0.875" in quality
    assert "0.25" in quality
    lineage = page.text.split('id="lineage"')[1].split("</section>")[0]
    assert "<dt>source</dt>" in lineage
    assert "<img" not in lineage
    assert "&lt;img" in lineage
    assert "No registered model version holds this version." in lineage


async def test_a_viewer_sees_datasets_and_workflows_but_no_forms_to_change_them(
    api: Api, app: FastAPI, scientist: dict[str, Any], project: dict[str, Any]
) -> None:
    viewer = await api.create_user(await api.admin_token(), "user")
    added = await api.client.put(
        f"/api/v1/projects/data/members/{viewer['email']}",
        json={"role": "viewer"},
        headers=auth(scientist["token"]),
    )
    assert added.status_code == 200, added.text
    async with signed_in_client(app, viewer["email"], viewer["password"]) as client:
        page = await client.get("/ui/projects/data/datasets")
        assert page.status_code == 200
        assert "New dataset" not in page.text
        workflows = await client.get("/ui/projects/data/workflows")
        assert "Apply a workflow spec" not in workflows.text


async def test_the_workflow_page_draws_its_graph_and_diffs_two_versions(
    browser: httpx.AsyncClient, api: Api, scientist: dict[str, Any], project: dict[str, Any]
) -> None:
    token = scientist["token"]
    first = await api.client.post("/api/v1/projects/data/workflows", json=SPEC, headers=auth(token))
    assert first.status_code == 201, first.text
    changed = {
        **SPEC,
        "description": XSS,
        "tasks": [*SPEC["tasks"][:3], {"name": "final", "type": "noop", "needs": ["third"]}],
    }
    second = await api.client.post(
        "/api/v1/projects/data/workflows", json=changed, headers=auth(token)
    )
    assert second.status_code in (200, 201), second.text

    page = await browser.get("/ui/projects/data/workflows/chain?version=1")
    assert page.status_code == 200
    nodes = re.findall(r'data-node="([^"]+)" data-state="spec"', page.text)
    assert nodes == ["first", "second", "third", "last"]
    assert len(re.findall(r'class="dag-edge"', page.text)) == 4  # first→2, →3, 2→last, 3→last

    diff = await browser.get("/ui/projects/data/workflows/chain/diff?a=1&b=2")
    assert diff.status_code == 200
    added = re.findall(r'<span class="diff-add">([^<]*)</span>', diff.text)
    removed = re.findall(r'<span class="diff-del">([^<]*)</span>', diff.text)
    assert any('"final"' in line.replace("&#34;", '"') for line in added), added
    assert any('"last"' in line.replace("&#34;", '"') for line in removed), removed
    assert XSS not in diff.text
    same = await browser.get("/ui/projects/data/workflows/chain/diff?a=2&b=2")
    assert "The two versions' specs are the same." in same.text


async def test_a_job_page_draws_its_dag_reads_logs_and_re_runs(
    browser: httpx.AsyncClient, api: Api, scientist: dict[str, Any], project: dict[str, Any]
) -> None:
    token = scientist["token"]
    await api.client.post("/api/v1/projects/data/workflows", json=SPEC, headers=auth(token))
    job = (
        await api.client.post(
            "/api/v1/projects/data/workflows/chain/jobs",
            json={"parameters": {"rows": 5}},
            headers=auth(token),
        )
    ).json()
    base = f"/ui/projects/data/jobs/{job['id']}"
    page = await browser.get(f"{base}?logs=second")
    assert page.status_code == 200
    states = dict(re.findall(r'data-node="([^"]+)" data-state="([^"]+)"', page.text))
    assert set(states) == {"first", "second", "third", "last"}
    assert all(state in ("pending", "queued") for state in states.values()), states
    # Each node links to its task's logs; the log panel follows the task asked for.
    assert 'href="?logs=second#logs"' in page.text
    assert f'data-log-url="{base}/tasks/second/logs"' in page.text
    unknown_task = await browser.get(f"{base}?logs=%3Cimg%3E")
    assert 'id="logs"' not in unknown_task.text
    live = await browser.get(f"{base}/live")
    assert 'data-node="last"' in live.text  # the fragment redraws the graph

    log = await browser.get(f"{base}/tasks/second/logs?offset=0")
    assert log.status_code == 200
    assert log.text == ""
    assert log.headers["x-log-offset"] == "0"
    assert log.headers["x-log-done"] == "false"  # not started: more will come
    assert (await browser.get(f"{base}/tasks/nope/logs")).status_code == 404
    assert (await browser.get(f"{base}/tasks/second/artifacts/model.pkl")).status_code == 404

    csrf = csrf_of(page)
    forged = await browser.post(
        f"{base}/rerun", data={"csrf_token": "x" * 43}, headers={"Origin": ORIGIN}
    )
    assert forged.status_code == 403
    again = await browser.post(
        f"{base}/rerun", data={"csrf_token": csrf}, headers={"Origin": ORIGIN}
    )
    assert again.status_code == 303
    new_id = again.headers["location"].rsplit("/", 1)[1]
    assert new_id != job["id"]
    rerun = await api.client.get(f"/api/v1/jobs/{new_id}", headers=auth(token))
    assert rerun.json()["parameters"] == {"rows": 5}
    assert rerun.json()["workflow"] == "chain"


CHAIN_YAML = """\
name: pasted
parameters:
  rows: 1
tasks:
  - name: first
    type: noop
  - name: second
    type: noop
    needs: [first]
"""


async def test_a_pasted_yaml_spec_becomes_a_workflow_and_a_bad_one_is_explained(
    browser: httpx.AsyncClient, api: Api, scientist: dict[str, Any], project: dict[str, Any]
) -> None:
    page = await browser.get("/ui/projects/data/workflows")
    assert "Apply a workflow spec" in page.text
    csrf = csrf_of(page)
    forged = await browser.post(
        "/ui/projects/data/workflows", data={"spec": CHAIN_YAML}, headers={"Origin": ORIGIN}
    )
    assert forged.status_code == 403
    applied = await browser.post(
        "/ui/projects/data/workflows",
        data={"spec": CHAIN_YAML, "csrf_token": csrf},
        headers={"Origin": ORIGIN},
    )
    assert applied.status_code == 303
    assert applied.headers["location"] == "/ui/projects/data/workflows/pasted"
    stored = await api.client.get(
        "/api/v1/projects/data/workflows/pasted/versions/1", headers=auth(scientist["token"])
    )
    assert [t["name"] for t in stored.json()["spec"]["tasks"]] == ["first", "second"]

    broken = CHAIN_YAML.replace("needs: [first]", f"needs: [missing]\n    # {XSS}")
    refused = await browser.post(
        "/ui/projects/data/workflows",
        data={"spec": broken, "csrf_token": csrf},
        headers={"Origin": ORIGIN},
    )
    assert refused.status_code == 422
    alert = refused.text.split('role="alert"')[1].split("</div>")[0]
    assert "missing" in alert  # the API's error, with its path
    assert XSS not in refused.text  # the typed spec comes back, escaped
    assert "&lt;img src=x" in refused.text
    not_yaml = await browser.post(
        "/ui/projects/data/workflows",
        data={"spec": "tasks: [unclosed", "csrf_token": csrf},
        headers={"Origin": ORIGIN},
    )
    assert not_yaml.status_code == 422
    assert 'role="alert"' in not_yaml.text
