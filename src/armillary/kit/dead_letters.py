"""The dead-letter queue's administration (``armillary events dead-letters``): list what is
there, replay it to the consumer that failed on it.

Messages are read with ``basic.get`` and left unacknowledged: closing the channel puts back
every one that was not replayed, so listing never removes anything.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from armillary.kit.broker import (
    ATTEMPT,
    CONSUMER,
    DEAD_LETTERS,
    ERROR,
    EXCHANGE,
    amqp_ssl_context,
    declare_core,
    event_message,
    retry_key,
)

# Enough for an operator's screen; a larger backlog is replayed with --all in one pass.
MAX_LISTED = 10_000


@dataclass(frozen=True)
class DeadLetter:
    event_id: str
    event_type: str
    consumer: str
    error: str
    attempts: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _dead_letter(message: AbstractIncomingMessage) -> DeadLetter:
    headers = message.headers or {}
    # Dead-lettered by us (retries exhausted) or by the broker (delivery limit): either way
    # the routing key is the consumer's name.
    consumer = str(headers.get(CONSUMER) or message.routing_key or "")
    error = str(headers.get(ERROR) or "")
    deaths = headers.get("x-death")
    if not error and isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        # Dead-lettered by the broker: "rejected" (malformed) or "delivery_limit" (crash loop).
        reason = deaths[0].get("reason", "unknown")
        error = f"broker: {reason.decode() if isinstance(reason, bytes) else reason}"
    attempts = headers.get(ATTEMPT, 0)
    return DeadLetter(
        event_id=message.message_id or "",
        event_type=message.type or "",
        consumer=consumer,
        error=error or "unknown",
        attempts=attempts if isinstance(attempts, int) else 0,
    )


async def _drain(url: str, limit: int, act: Any, ca_file: Path | None = None) -> list[DeadLetter]:
    connection = await aio_pika.connect(url, ssl_context=amqp_ssl_context(url, ca_file))
    try:
        channel = await connection.channel(publisher_confirms=True)
        await declare_core(channel)
        queue = await channel.get_queue(DEAD_LETTERS)
        seen: list[DeadLetter] = []
        while len(seen) < limit:
            message = await queue.get(no_ack=False, fail=False, timeout=10)
            if message is None:
                break
            letter = _dead_letter(message)
            seen.append(letter)
            await act(channel, message, letter)
        return seen
    finally:
        await connection.close()  # un-acked messages go back to the queue


async def list_dead_letters(
    url: str, limit: int = MAX_LISTED, *, ca_file: Path | None = None
) -> list[DeadLetter]:
    async def keep(*_args: Any) -> None:
        return None

    return await _drain(url, limit, keep, ca_file)


async def replay(
    url: str, event_ids: set[str] | None, *, ca_file: Path | None = None
) -> list[DeadLetter]:
    """Send the dead letters with these event ids (all when None) back to their consumer's
    queue only (``retry.<consumer>``), with a fresh retry ladder. Returns those replayed."""
    replayed: list[DeadLetter] = []

    async def send(channel: Any, message: AbstractIncomingMessage, letter: DeadLetter) -> None:
        if event_ids is not None and letter.event_id not in event_ids:
            return
        if not letter.consumer or not letter.event_id:
            return
        out = event_message(uuid.UUID(letter.event_id), letter.event_type, json.loads(message.body))
        exchange = await channel.get_exchange(EXCHANGE)
        # Confirmed before the dead letter is acked: a crash in between replays it twice at
        # worst, and the consumer's idempotency record absorbs that.
        await exchange.publish(out, retry_key(letter.consumer), mandatory=False, timeout=10)
        await message.ack()
        replayed.append(letter)

    await _drain(url, MAX_LISTED, send, ca_file)
    return replayed
