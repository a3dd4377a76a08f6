"""The registry's events, as the data service consumes them. The bus handles each event in
one unit of work that also records it as handled, so a redelivery adds nothing."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from armillary.contracts.registry import ModelVersionRegistered
from armillary.kit.events import Delivery, EventBus

from . import service

CONSUMER = "data.holds"


async def on_model_version_registered(session: AsyncSession, delivery: Delivery) -> None:
    event = ModelVersionRegistered.model_validate(delivery.payload)
    await service.record_registration(session, event, delivery.id)


def subscribe(bus: EventBus) -> None:
    """Put the holds consumer on the bus; only registrations that used datasets interest it."""
    bus.subscribe(
        ModelVersionRegistered.TYPE,
        CONSUMER,
        on_model_version_registered,
        when=lambda payload: bool(payload.get("datasets")),
    )
