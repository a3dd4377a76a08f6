"""Console slice 2b over the ASGI app (no browser): model versions, comparison, lineage and
aliases; deployments with canary steps, rollback, keys and the live analysis; alerts; the
admin pages and health. Every page reads through the public API as the signed-in user."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Api, auth
from tests.integration.console.test_console_pages import ORIGIN, XSS, csrf_of, signed_in_client
from tests.integration.serving.predict_support import SIGNATURE, features, instances, model_bytes

MODEL = "churn"


async def _project_with_versions(api: Api, token: str, slug: str) -> str:
    """A project with model ``churn``: v1 (accuracy .90, f1 .80), v2 (accuracy .95, f1 .70)."""
    await api.create_project(token, slug)
    base = f"/api/v1/projects/{slug}/models"
    created = await api.client.post(
        base, json={"name": MODEL, "description": XSS}, headers=auth(token)
    )
    assert created.status_code == 201, created.text
    for kind, metrics in (
        ("good", {"accuracy": 0.9, "f1": 0.8}),
        ("inverse", {"accuracy": 0.95, "f1": 0.7}),
    ):
        uploaded = await api.client.post(
            f"{base}/{MODEL}/versions/upload",
            files={"file": ("model.onnx", model_bytes(kind), "application/octet-stream")},
            data={"signature": json.dumps(SIGNATURE), "metrics": json.dumps(metrics)},
            headers=auth(token),
        )
        assert uploaded.status_code == 201, uploaded.text
    return slug


async def post_form(
    client: httpx.AsyncClient, page_url: str, action: str, data: dict[str, Any]
) -> httpx.Response:
    page = await client.get(page_url)
    assert page.status_code == 200, page.text
    return await client.post(
        action, data={**data, "csrf_token": csrf_of(page)}, headers={"Origin": ORIGIN}
    )


def rows_of(html: str, attribute: str) -> list[str]:
    return re.findall(rf'{attribute}="([^"]+)"', html)


@pytest.fixture
async def scientist(api: Api) -> dict[str, Any]:
    return await api.create_user(await api.admin_token(), "data_scientist")


async def test_versions_sort_by_any_metric_and_compare_with_a_chart(
    app: FastAPI, api: Api, scientist: dict[str, Any]
) -> None:
    slug = await _project_with_versions(api, scientist["token"], "sorting")
    page_url = f"/ui/projects/{slug}/models/{MODEL}"
    async with signed_in_client(app, scientist["email"], scientist["password"]) as client:
        listed = await client.get(f"/ui/projects/{slug}/models")
        assert f'href="{page_url}"' in listed.text
        by_default = await client.get(page_url)
        assert by_default.status_code == 200
        assert rows_of(by_default.text, "data-version") == ["2", "1"]
        # The model's description is the user's text, escaped.
        assert XSS not in by_default.text
        assert "&lt;img src=x" in by_default.text
        by_f1 = await client.get(page_url, params={"order_by": "metrics.f1"})
        assert rows_of(by_f1.text, "data-version") == ["1", "2"]
        # Headers offer every metric, and the sorted one links to its reverse.
        assert 'data-sort="metrics.accuracy"' in by_f1.text
        assert "order_by=-metrics.f1" in by_f1.text
        reversed_ = await client.get(page_url, params={"order_by": "-metrics.f1"})
        assert rows_of(reversed_.text, "data-version") == ["2", "1"]
        refused = await client.get(page_url, params={"order_by": "metrics.x;drop"})
        assert refused.status_code == 200
        assert 'class="error"' in refused.text

        compared = await client.get(f"{page_url}/compare", params={"v": ["1", "2"]})
        assert compared.status_code == 200
        assert 'data-metric="accuracy"' in compared.text
        assert "0.9</td><td>0.95" in compared.text
        # One bar per version per metric, the taller bar the larger value.
        bars = re.findall(r'<rect class="bar s(\d)" x="[^"]+" y="([^"]+)"', compared.text)
        assert len(bars) == 4
        accuracy = [float(y) for _, y in bars[:2]]
        assert accuracy[1] < accuracy[0]  # v2's bar reaches higher (smaller y)
        alone = await client.get(f"{page_url}/compare", params={"v": ["1"]})
        assert "at least two versions" in alone.text
        garbled = await client.get(f"{page_url}/compare", params={"v": ["1", "x"]})
        assert garbled.status_code == 200
        assert "at least two versions" in garbled.text


async def test_aliases_move_roll_back_and_answer_as_of_through_csrf_protected_forms(
    app: FastAPI, api: Api, scientist: dict[str, Any]
) -> None:
    slug = await _project_with_versions(api, scientist["token"], "aliases")
    page_url = f"/ui/projects/{slug}/models/{MODEL}"
    alias_url = f"{page_url}/aliases/champion"
    api_alias = f"/api/v1/projects/{slug}/models/{MODEL}/aliases/champion"
    async with signed_in_client(app, scientist["email"], scientist["password"]) as client:
        moved = await post_form(
            client, page_url, f"{page_url}/aliases", {"alias": "champion", "version": "1"}
        )
        assert moved.status_code == 303
        assert moved.headers["location"] == alias_url
        between = datetime.now(UTC).isoformat()
        moved = await post_form(
            client, alias_url, f"{page_url}/aliases", {"alias": "champion", "version": "2"}
        )
        assert moved.status_code == 303
        now = await api.client.get(api_alias, headers=auth(scientist["token"]))
        assert now.json()["version"] == 2
        # A form without the token (or from another origin) moves nothing.
        forged = await client.post(
            f"{page_url}/aliases",
            data={"alias": "champion", "version": "1"},
            headers={"Origin": ORIGIN},
        )
        assert forged.status_code == 403
        assert (await api.client.get(api_alias, headers=auth(scientist["token"]))).json()[
            "version"
        ] == 2

        as_of = await client.get(alias_url, params={"at": between})
        assert re.search(r'id="alias-as-of">At [^<]+pointed at <a[^>]+>v1<', as_of.text)
        bad_moment = await client.get(alias_url, params={"at": "yesterday-ish"})
        assert bad_moment.status_code == 200
        assert 'class="error" id="alias-as-of"' in bad_moment.text

        rolled = await post_form(client, alias_url, f"{alias_url}/rollback", {"reason": "bad"})
        assert rolled.status_code == 303
        assert (await api.client.get(api_alias, headers=auth(scientist["token"]))).json()[
            "version"
        ] == 1
        history = await client.get(alias_url)
        assert history.text.count("<tr><td>") >= 3
        assert "bad" in history.text
        unknown = await post_form(
            client, page_url, f"{page_url}/aliases", {"alias": "champion", "version": "99"}
        )
        assert unknown.status_code in (200, 404, 409, 422)
        assert (await api.client.get(api_alias, headers=auth(scientist["token"]))).json()[
            "version"
        ] == 1

        lineage = await client.get(f"{page_url}/versions/1")
        assert lineage.status_code == 200
        assert 'data-node="model_version"' in lineage.text
        assert 'data-node="alias"' in lineage.text  # downstream: champion points here
        assert f'href="{alias_url}"' in lineage.text
        assert (await client.get(f"{page_url}/versions/x")).status_code == 404
        trained_on = await client.get(
            f"/ui/projects/{slug}/models-lineage", params={"dataset": "events", "version": "1"}
        )
        assert trained_on.status_code == 200
        assert "None." in trained_on.text  # uploaded versions name no training data


async def _deploy(client: httpx.AsyncClient, slug: str) -> httpx.Response:
    return await post_form(
        client,
        f"/ui/projects/{slug}/deployments",
        f"/ui/projects/{slug}/deployments",
        {
            "name": "churn-api",
            "mode": "random",
            "variant_0": "primary",
            "model_0": MODEL,
            "target_0": "1",
            "weight_0": "90",
            "variant_1": "candidate",
            "model_1": MODEL,
            "target_1": "2",
            "weight_1": "10",
        },
    )


async def test_a_deployment_with_two_variants_shows_traffic_analysis_canary_and_rollback(
    app: FastAPI, api: Api, scientist: dict[str, Any]
) -> None:
    slug = await _project_with_versions(api, scientist["token"], "serving")
    here = f"/ui/projects/{slug}/deployments/churn-api"
    async with signed_in_client(app, scientist["email"], scientist["password"]) as client:
        created = await _deploy(client, slug)
        assert created.status_code == 303, created.text
        assert created.headers["location"] == here
        page = await client.get(here)
        assert rows_of(page.text, "data-variant")[:2] == ["primary", "candidate"]
        assert 'data-live-url="' + here + '/live"' in page.text

        key = await post_form(client, here, f"{here}/keys", {"name": "app"})
        assert key.status_code == 201
        shown = re.search(r'<code id="new-key">([^<]+)</code>', key.text)
        assert shown
        secret = shown.group(1)
        again = await client.get(here)
        assert secret not in again.text  # shown once
        assert key.headers["cache-control"] == "no-store"

        quiet = await client.get(f"{here}/live", headers={"HX-Request": "true"})
        assert 'data-live-url="' + here + '/live"' in quiet.text  # a deployment never ends
        sent = 0
        for batch in range(4):
            rows = features(10, batch)
            answer = await api.client.post(
                f"/api/v1/projects/{slug}/deployments/churn-api/predict",
                json={"instances": instances(rows)},
                headers={"X-API-Key": secret},
            )
            assert answer.status_code == 200, answer.text
            sent += 1
        live = await client.get(f"{here}/live", headers={"HX-Request": "true"})
        assert live.status_code == 200
        requests = [int(n) for n in re.findall(r'<td class="requests">(\d+)</td>', live.text)]
        assert sum(requests) == sent
        assert 'class="comparison" data-variant="candidate"' in live.text
        assert 'class="recommendation"' in live.text
        assert "% CI)" in live.text
        # The poller backs off while the fingerprint stays, and looks again when it moves.
        assert rows_of(live.text, "data-fingerprint") != rows_of(quiet.text, "data-fingerprint")

        for bad in ("lots", "150", "nan"):
            refused = await post_form(
                client, here, f"{here}/canary", {"variant": "candidate", "percent": bad}
            )
            assert refused.status_code == 422, bad
            assert "from 0 to 100" in refused.text
        step = await post_form(
            client, here, f"{here}/canary", {"variant": "candidate", "percent": "50"}
        )
        assert step.status_code == 303, step.text
        config = await api.client.get(
            f"/api/v1/projects/{slug}/deployments/churn-api", headers=auth(scientist["token"])
        )
        weights = {v["name"]: v["weight"] for v in config.json()["variants"]}
        assert weights == {"primary": 50, "candidate": 50}
        rolled = await post_form(client, here, f"{here}/rollback", {"reason": "too soon"})
        assert rolled.status_code == 303
        config = await api.client.get(
            f"/api/v1/projects/{slug}/deployments/churn-api", headers=auth(scientist["token"])
        )
        weights = {v["name"]: v["weight"] for v in config.json()["variants"]}
        assert weights == {"primary": 90, "candidate": 10}
        history = await client.get(here)
        assert "too soon" in history.text
        assert "canary: candidate at 50%" in history.text


async def test_a_user_role_viewer_sees_what_the_api_lets_them_and_no_write_forms(
    app: FastAPI, api: Api, scientist: dict[str, Any]
) -> None:
    slug = await _project_with_versions(api, scientist["token"], "viewed")
    async with signed_in_client(app, scientist["email"], scientist["password"]) as client:
        assert (await _deploy(client, slug)).status_code == 303
    viewer = await api.create_user(await api.admin_token(), "user")
    added = await api.client.put(
        f"/api/v1/projects/{slug}/members/{viewer['email']}",
        json={"role": "viewer"},
        headers=auth(scientist["token"]),
    )
    assert added.status_code == 200, added.text
    async with signed_in_client(app, viewer["email"], viewer["password"]) as client:
        model = await client.get(f"/ui/projects/{slug}/models/{MODEL}")
        assert model.status_code == 200
        assert "Move alias" not in model.text
        deployment = await client.get(f"/ui/projects/{slug}/deployments/churn-api")
        assert deployment.status_code == 200
        assert "Apply step" not in deployment.text
        assert "Create key" not in deployment.text
        # A forged write is refused by the API, whatever the console shows.
        refused = await post_form(
            client,
            f"/ui/projects/{slug}/deployments/churn-api",
            f"/ui/projects/{slug}/deployments/churn-api/canary",
            {"variant": "candidate", "percent": "100"},
        )
        assert refused.status_code in (403, 404)
        for admin_page in ("users", "audit", "keys", "health"):
            denied = await client.get(f"/ui/admin/{admin_page}")
            assert denied.status_code == 404, admin_page
        assert 'href="/ui/admin/users"' not in model.text
        # A page's error line and status are the server's, never taken from the URL.
        spoofed = await client.get(
            f"/ui/projects/{slug}/deployments/churn-api",
            params={"error": "Session expired: sign in at evil.example", "status_code": "500"},
        )
        assert spoofed.status_code == 200
        assert "evil.example" not in spoofed.text


async def test_alerts_list_channels_rules_and_deliveries(
    app: FastAPI, api: Api, scientist: dict[str, Any]
) -> None:
    await api.create_project(scientist["token"], "alerting")
    base = "/api/v1/projects/alerting/alerts"
    channel = await api.client.post(
        f"{base}/channels",
        json={
            "name": "ops-hook",
            "kind": "webhook",
            "config": {
                "url": "https://hooks.example.com/x",
                "signing_secret": "s3cret-value-0123456789",
            },
        },
        headers=auth(scientist["token"]),
    )
    assert channel.status_code == 201, channel.text
    rule = await api.client.post(
        f"{base}/rules",
        json={"name": "failures", "kind": "job_failed", "channel_ids": [channel.json()["id"]]},
        headers=auth(scientist["token"]),
    )
    assert rule.status_code == 201, rule.text
    async with signed_in_client(app, scientist["email"], scientist["password"]) as client:
        page = await client.get("/ui/projects/alerting/alerts")
        assert page.status_code == 200
        assert "ops-hook" in page.text
        assert "job failed" in page.text
        assert "s3cret-value" not in page.text
        created = await post_form(
            client,
            "/ui/projects/alerting/alerts",
            "/ui/projects/alerting/alerts/rules",
            {
                "name": "slow-train",
                "kind": "job_deadline",
                "max_minutes": "30",
                "channel_ids": channel.json()["id"],
            },
        )
        assert created.status_code == 303, created.text
        rules = await api.client.get(f"{base}/rules", headers=auth(scientist["token"]))
        made = {r["name"]: r for r in rules.json()["items"]}["slow-train"]
        assert made["max_minutes"] == 30
        assert made["channel_ids"] == [channel.json()["id"]]
        refused = await post_form(
            client,
            "/ui/projects/alerting/alerts",
            "/ui/projects/alerting/alerts/rules",
            {"name": "no-kind", "kind": "sometimes", "channel_ids": channel.json()["id"]},
        )
        assert refused.status_code == 422
        assert 'class="error"' in refused.text
        # A test message: whatever its fate here (no network), its delivery is listed.
        hook = channel.json()["id"]
        tested = await post_form(
            client,
            "/ui/projects/alerting/alerts",
            f"/ui/projects/alerting/alerts/channels/{hook}/test",
            {},
        )
        assert tested.status_code == 303, tested.text
        listed = await client.get(tested.headers["location"])
        assert "No deliveries." not in listed.text
        assert 'class="state state-failed"' in listed.text
        assert "does not resolve" in listed.text
        none_sent = await client.get(
            f"/ui/projects/alerting/alerts/channels/{hook}", params={"status": "sent"}
        )
        assert none_sent.status_code == 200
        assert "No deliveries." in none_sent.text  # the state filter applies


async def test_admin_pages_users_audit_verify_keys_and_health(app: FastAPI, api: Api) -> None:
    other = await api.create_user(await api.admin_token(), "user")
    async with signed_in_client(app, ADMIN_EMAIL, ADMIN_PASSWORD) as client:
        users = await client.get("/ui/admin/users")
        assert users.status_code == 200
        assert f'data-user="{other["email"]}"' in users.text
        assert 'href="/ui/admin/users"' in users.text
        changed = await post_form(
            client, "/ui/admin/users", f"/ui/admin/users/{other['id']}", {"role": "data_scientist"}
        )
        assert changed.status_code == 303
        found = await api.client.get(
            f"/api/v1/users/{other['id']}", headers=auth(await api.admin_token())
        )
        assert found.json()["role"] == "data_scientist"

        audit = await client.get("/ui/admin/audit", params={"action": "users.role_change"})
        assert audit.status_code == 200
        actions = re.findall(r'<td class="audit-action">([^<]+)</td>', audit.text)
        assert actions, audit.text
        assert set(actions) == {"users.role_change"}
        checked = await client.get("/ui/admin/audit", params={"verify": "true"})
        assert 'id="verify-result"' in checked.text
        assert "The chain is intact" in checked.text
        bad = await client.get("/ui/admin/audit", params={"since": "not-a-date"})
        assert bad.status_code == 200
        assert 'class="error"' in bad.text

        keys = await client.get("/ui/admin/keys")
        jwks = (await api.client.get("/api/v1/auth/jwks")).json()
        assert jwks["keys"]
        assert all(k["kid"] in keys.text for k in jwks["keys"])

        health = await client.get("/ui/admin/health")
        assert health.status_code == 200
        assert "API readiness" in health.text
        assert "database: ok" in health.text
        # Each service's requests from its own metrics, and the engine's workers and queue.
        for service in ("identity", "data", "workflows", "registry", "serving", "tracking"):
            assert f"<tr><td>{service}</td>" in health.text
        services = health.text.split('id="services"', 1)[1].split("</table>", 1)[0]
        assert "unavailable" not in services
        assert "ms" in services  # latency quantiles of services that answered requests
        assert 'id="workers"' in health.text
        assert "Tasks queued:" in health.text
        assert "Idle workers" in health.text  # what the API does not expose is said
