"""Console slice 2b in a real browser: a registered model's versions, comparison and alias
move; a deployment with two variants whose traffic and analysis appear live while
predictions arrive through the API; a `user`-role viewer's narrower view; the admin pages.
Screenshots go to test-artifacts/console/ (prefix 2b-).

The models are uploaded through the API (ONNX files fitted here) rather than trained by a
workflow: a training job would cost the browser budget most of a minute for the same page."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
from tests.browser.test_console_in_chromium import (  # noqa: F401 - fixtures
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    Platform,
    auth,
    chromium,
    open_page,
    platform,
    pytestmark,
    sign_in_by_keyboard,
    tab,
)
from tests.integration.serving.predict_support import SIGNATURE, features, instances, model_bytes

SLUG = "churn-models"


def _register(platform: Platform, token: str) -> None:  # noqa: F811
    created = platform.http.post(
        "/api/v1/projects", json={"slug": SLUG, "name": "Churn models"}, headers=auth(token)
    )
    assert created.status_code == 201, created.text
    base = f"/api/v1/projects/{SLUG}/models"
    model = platform.http.post(base, json={"name": "churn"}, headers=auth(token))
    assert model.status_code == 201, model.text
    for kind, metrics in (("good", {"accuracy": 0.9}), ("inverse", {"accuracy": 0.95})):
        uploaded = platform.http.post(
            f"{base}/churn/versions/upload",
            files={"file": ("model.onnx", model_bytes(kind), "application/octet-stream")},
            data={"signature": json.dumps(SIGNATURE), "metrics": json.dumps(metrics)},
            headers=auth(token),
        )
        assert uploaded.status_code == 201, uploaded.text


def _predict_in_background(base_url: str, key: str, count: int) -> threading.Thread:
    def send() -> None:
        with httpx.Client(base_url=base_url, timeout=30) as http:
            for i in range(count):
                http.post(
                    f"/api/v1/projects/{SLUG}/deployments/churn-api/predict",
                    json={"instances": instances(features(5, i))},
                    headers={"X-API-Key": key},
                )

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def _fits_a_phone(watched: Any, base_url: str, paths: list[str]) -> None:
    page = watched.page
    page.set_viewport_size({"width": 390, "height": 844})
    for path in paths:
        page.goto(f"{base_url}{path}")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} is wider than the phone by {overflow}px"
    page.set_viewport_size({"width": 1280, "height": 900})


def test_models_deployments_and_admin_pages_in_chromium(
    platform: Platform,  # noqa: F811 - the fixture imported above
    open_page: Any,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    scientist = platform.user("data_scientist", "Mira")
    _register(platform, scientist["token"])
    watched = open_page()
    page = watched.page
    base = platform.base_url
    sign_in_by_keyboard(watched, base, scientist["email"], scientist["password"])

    # The model: versions sorted by a metric, two compared, the champion alias moved.
    page.goto(f"{base}/ui/projects/{SLUG}/models")
    page.get_by_role("link", name="churn", exact=True).click()
    page.wait_for_url(f"{base}/ui/projects/{SLUG}/models/churn")
    page.locator('a[data-sort="metrics.accuracy"]').click()
    page.wait_for_url("**order_by=metrics.accuracy")
    rows = page.locator("tr[data-version]")
    expect(rows.first).to_have_attribute("data-version", "2")
    page.locator('a[data-sort="metrics.accuracy"]').click()  # and reversed
    expect(rows.first).to_have_attribute("data-version", "1")
    watched.shot("2b-01-model-versions")
    page.get_by_label("Compare v1").check()
    page.get_by_label("Compare v2").check()
    page.get_by_role("button", name="Compare selected").click()
    expect(page.locator('tr[data-metric="accuracy"]')).to_contain_text("0.95")
    expect(page.locator("svg rect.bar")).to_have_count(2)
    watched.shot("2b-02-compare")
    page.go_back()
    page.get_by_label("Alias", exact=True).fill("champion")
    page.get_by_label("Version", exact=True).fill("2")
    page.get_by_role("button", name="Move alias").click()
    expect(page.locator("#alias-now")).to_contain_text("v2")
    expect(page.locator("#alias-history tbody tr")).to_have_count(1)
    watched.shot("2b-03-alias")
    page.locator("#alias-now a").click()
    expect(page.locator('svg.lineage [data-node="alias"]')).to_have_count(1)
    watched.shot("2b-04-version-lineage")

    # A deployment with two variants, created through the form.
    page.goto(f"{base}/ui/projects/{SLUG}/deployments")
    page.locator("#d-name").fill("churn-api")
    page.get_by_label("Variant 1 model").fill("churn")
    page.get_by_label("Variant 1 version or alias").fill("1")
    page.get_by_label("Variant 2 model").fill("churn")
    page.get_by_label("Variant 2 version or alias").fill("champion")
    page.get_by_role("button", name="Create deployment").click()
    page.wait_for_url(f"{base}/ui/projects/{SLUG}/deployments/churn-api")
    expect(page.locator("#variants tbody tr")).to_have_count(2)
    page.get_by_label("New key name").fill("browser")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-key").inner_text()
    assert key
    watched.shot("2b-05-deployment-key-once")

    # Predictions arrive through the API while the page is open: it updates in place.
    page.goto(f"{base}/ui/projects/{SLUG}/deployments/churn-api")
    page.evaluate("window.__sameDocument = true")
    sender = _predict_in_background(base, key, 30)
    expect(page.locator('#traffic tr[data-variant="primary"] .requests')).not_to_have_text(
        "0", timeout=20_000
    )
    sender.join(timeout=30)
    expect(page.locator('.comparison[data-variant="candidate"] .recommendation')).not_to_be_empty()
    assert page.evaluate("window.__sameDocument") is True
    watched.shot("2b-06-deployment-live-analysis")
    tab(page, "Alerts").click()
    expect(page.locator("#channels")).to_contain_text("No channels.")
    watched.shot("2b-07-alerts")
    _fits_a_phone(
        watched,
        base,
        [
            f"/ui/projects/{SLUG}/models/churn",
            f"/ui/projects/{SLUG}/deployments",
            f"/ui/projects/{SLUG}/deployments/churn-api",
        ],
    )
    watched.assert_clean()

    # A `user`-role viewer sees the model and the deployment, no write form, no admin.
    viewer = platform.user("user", "Vic")
    added = platform.http.put(
        f"/api/v1/projects/{SLUG}/members/{viewer['email']}",
        json={"role": "viewer"},
        headers=auth(scientist["token"]),
    )
    assert added.status_code == 200, added.text
    seen = open_page()
    sign_in_by_keyboard(seen, base, viewer["email"], viewer["password"])
    seen.page.goto(f"{base}/ui/projects/{SLUG}/deployments/churn-api")
    expect(seen.page.locator("#variants tbody tr")).to_have_count(2)
    expect(seen.page.get_by_role("button", name="Apply step")).to_have_count(0)
    expect(seen.page.get_by_role("link", name="Admin")).to_have_count(0)
    seen.shot("2b-08-viewer-deployment")
    seen.page.goto(f"{base}/ui/admin/audit")
    expect(seen.page.get_by_role("heading", name="Not found")).to_be_visible()
    seen.assert_clean()

    # The admin: users, the audit log and its chain, signing keys, health.
    admin = open_page()
    sign_in_by_keyboard(admin, base, ADMIN_EMAIL, ADMIN_PASSWORD)
    admin.page.get_by_role("link", name="Admin").click()
    expect(admin.page.locator(f'tr[data-user="{viewer["email"]}"]')).to_be_visible()
    admin.shot("2b-09-admin-users")
    admin.page.get_by_role("navigation", name="Admin").get_by_role("link", name="Audit log").click()
    admin.page.get_by_role("button", name="Verify chain").click()
    expect(admin.page.locator("#verify-result")).to_contain_text("intact")
    admin.shot("2b-10-admin-audit")
    admin.page.get_by_role("link", name="Signing keys").click()
    expect(admin.page.locator("#signing-keys tbody tr")).not_to_have_count(0)
    admin.page.get_by_role("link", name="Health").click()
    expect(admin.page.locator("#probes")).to_contain_text("database: ok")
    admin.shot("2b-11-admin-health")
    admin.assert_clean()
