"""Events the registry consumes: the end of a version's ONNX export job (ADR 0018)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from armillary.contracts.events import JobStatusChanged
from armillary.kit.events import Delivery, EventBus

from . import onnx

CONSUMER = "registry.onnx_exports"
_ENDED_WITHOUT_SUCCESS = frozenset({"failed", "cancelled"})


async def on_job_status_changed(session: AsyncSession, delivery: Delivery) -> None:
    event = JobStatusChanged.model_validate(delivery.payload)
    await onnx.export_job_ended(session, event.job_id, event.to_status)


def subscribe(bus: EventBus) -> None:
    bus.subscribe(
        JobStatusChanged.TYPE,
        CONSUMER,
        on_job_status_changed,
        when=lambda payload: payload.get("to_status") in _ENDED_WITHOUT_SUCCESS,
    )
