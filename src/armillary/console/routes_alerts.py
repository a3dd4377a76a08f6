"""Alert pages: a project's channels (secrets stay redacted by the API), rules and each
channel's deliveries, read through the public API as the signed-in user."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .errors import NotFoundPage, problem_text
from .pages import redirect, render
from .routes import Api, CsrfField, seg, signed_in
from .session import UI, check_csrf

router = APIRouter(prefix=UI, include_in_schema=False)

DELIVERY_STATES = ("pending", "sent", "failed")
RULE_KINDS = ("job_failed", "quality_gate_failed", "task_duration_p95", "job_deadline")
WRITERS = ("owner", "editor")


def _base(project: str) -> str:
    return f"/api/v1/projects/{seg(project)}/alerts"


@router.get("/projects/{project}/alerts")
async def alerts(request: Request, api: Api, project: str) -> Response:
    return await _alerts_view(request, api, project)


async def _alerts_view(
    request: Request, api: Api, project: str, error: str | None = None, status_code: int = 200
) -> Response:
    await signed_in(request, api)
    info = await api.read(f"/api/v1/projects/{seg(project)}")
    channels = await api.read(f"{_base(project)}/channels", limit=100)
    rules = await api.read(f"{_base(project)}/rules", limit=100)
    names = {c["id"]: c["name"] for c in channels.get("items", [])}
    return render(
        request,
        "alerts.html",
        status_code=status_code,
        project=info,
        channels=channels,
        rules=rules,
        names=names,
        kinds=RULE_KINDS,
        can_write=info.get("my_role") in WRITERS,
        error=error,
    )


@router.post("/projects/{project}/alerts/rules")
async def create_rule(request: Request, api: Api, project: str) -> Response:
    """A rule from the form: a name, what fires it, the channels it notifies, and the
    optional scope and threshold its kind takes (the API says which are required)."""
    form = await request.form()
    check_csrf(request, str(form.get("csrf_token") or "") or None)

    def field(name: str) -> str:
        return str(form.get(name) or "").strip()[:200]

    body: dict[str, Any] = {
        "name": field("name"),
        "kind": field("kind"),
        "channel_ids": [str(c)[:64] for c in form.getlist("channel_ids")][:20],
    }
    for name in ("workflow", "task"):
        if field(name):
            body[name] = field(name)
    try:
        if field("factor"):
            body["factor"] = float(field("factor"))
        for name in ("min_samples", "max_minutes"):
            if field(name):
                body[name] = int(field(name))
    except ValueError:
        return await _alerts_view(
            request, api, project, error="Thresholds are numbers", status_code=422
        )
    response = await api.request("POST", f"{_base(project)}/rules", json=body)
    if response.status_code == 404:
        raise NotFoundPage
    if response.status_code != 201:
        return await _alerts_view(
            request, api, project, error=problem_text(response), status_code=response.status_code
        )
    return redirect(f"{UI}/projects/{seg(project)}/alerts")


@router.post("/projects/{project}/alerts/channels/{channel_id}/test")
async def send_test_message(
    request: Request, api: Api, project: str, channel_id: str, csrf: CsrfField = None
) -> Response:
    """Sends a test message now; the channel's deliveries then show how it went."""
    check_csrf(request, csrf)
    path = f"{_base(project)}/channels/{seg(channel_id)}/test"
    response = await api.request("POST", path)
    if response.status_code in (403, 404, 422):
        raise NotFoundPage
    if response.status_code >= 400:
        return await _alerts_view(
            request, api, project, error=problem_text(response), status_code=response.status_code
        )
    return redirect(f"{UI}/projects/{seg(project)}/alerts/channels/{seg(channel_id)}")


@router.get("/projects/{project}/alerts/channels/{channel_id}")
async def deliveries(
    request: Request, api: Api, project: str, channel_id: str, status: str = "", offset: int = 0
) -> Response:
    await signed_in(request, api)
    info = await api.read(f"/api/v1/projects/{seg(project)}")
    path = f"{_base(project)}/channels/{seg(channel_id)}"
    channel = await api.read(path)
    state = status if status in DELIVERY_STATES else ""
    size = request.app.state.console_settings.page_size
    page: dict[str, Any] = await api.read(
        f"{path}/deliveries", status=state, limit=size, offset=max(offset, 0)
    )
    return render(
        request,
        "alert_channel.html",
        project=info,
        channel=channel,
        page=page,
        states=DELIVERY_STATES,
        status=state,
    )
