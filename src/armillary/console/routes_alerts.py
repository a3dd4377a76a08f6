"""Alert pages: a project's channels (secrets stay redacted by the API), rules and each
channel's deliveries, read through the public API as the signed-in user."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .pages import render
from .routes import Api, seg, signed_in
from .session import UI

router = APIRouter(prefix=UI, include_in_schema=False)

DELIVERY_STATES = ("pending", "sent", "failed")


def _base(project: str) -> str:
    return f"/api/v1/projects/{seg(project)}/alerts"


@router.get("/projects/{project}/alerts")
async def alerts(request: Request, api: Api, project: str) -> Response:
    await signed_in(request, api)
    info = await api.read(f"/api/v1/projects/{seg(project)}")
    channels = await api.read(f"{_base(project)}/channels", limit=100)
    rules = await api.read(f"{_base(project)}/rules", limit=100)
    names = {c["id"]: c["name"] for c in channels.get("items", [])}
    return render(request, "alerts.html", project=info, channels=channels, rules=rules, names=names)


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
