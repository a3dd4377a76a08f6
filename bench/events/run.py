"""Benchmark: events over RabbitMQ (ADR 0020), commit to consumer effect.

    .venv/bin/python bench/events/run.py [--rate 300] [--duration 15] [--producers 8]

A private RabbitMQ node (tests/faults/private_rabbitmq.py, never the machine's broker) and a
scratch database on the local PostgreSQL (created, migrated, dropped). One process: producers
write outbox rows in their own transactions (``kit.events.publish``, as a service would) at
``--rate`` events/s in total; the relay publishes them with confirms. A second process
consumes with the default prefetch and applies each event in its own transaction
(idempotency record included).

Latency: from the producer's commit to the end of the consumer's transaction for that event
(wall clock, same machine).
Throughput: events applied per second over the run. Results: bench/results/events.json.
Targets (issue 14): p50 <= 20 ms, p99 <= 200 ms, >= 300 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pydantic import BaseModel  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine  # noqa: E402

from armillary.kit.broker import BrokerConfig, RabbitTransport  # noqa: E402
from armillary.kit.db import Database  # noqa: E402
from armillary.kit.events import Delivery, EventBus, publish  # noqa: E402
from armillary.kit.settings import Settings  # noqa: E402
from armillary.migrations.runner import upgrade  # noqa: E402

ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
EVENT = "bench.events.tick"


class Tick(BaseModel):
    n: int


async def _admin(statement: str) -> None:
    engine = create_async_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(statement))
    await engine.dispose()


def _bus(db_url: str, rabbit_url: str) -> tuple[Database, EventBus, RabbitTransport]:
    settings = Settings(database_url=db_url, home=Path("/tmp/armillary-bench-events"))
    db = Database.from_settings(settings, role="api")
    bus = EventBus(db)
    bus.attach()
    transport = RabbitTransport(bus, BrokerConfig(url=rabbit_url))
    bus.transport = transport
    return db, bus, transport


async def consumer(db_url: str, rabbit_url: str, out: Path) -> None:
    """The consumer process: appends "event-id wall-time" once each event's transaction
    committed."""
    _db, bus, transport = _bus(db_url, rabbit_url)

    async def apply(_session: AsyncSession, _delivery: Delivery) -> None:
        return None

    bus.subscribe(EVENT, "bench.consumer", apply)
    original = bus.handle
    lines: list[str] = []

    async def timed(name: str, delivery: Delivery) -> bool:
        done = await original(name, delivery)
        if done:
            lines.append(f"{delivery.id} {time.time()}\n")
        return done

    bus.handle = timed  # type: ignore[method-assign]
    await transport.start()
    await asyncio.wait_for(transport.connected.wait(), 30)
    out.write_text("")
    while True:
        await asyncio.sleep(0.2)
        if lines:
            taken, lines[:] = list(lines), []
            with out.open("a") as file:
                file.writelines(taken)


async def run(
    rate: float, duration: float, producers: int, rabbit_url: str, db_url: str, out: Path
) -> dict[str, Any]:
    db, bus, transport = _bus(db_url, rabbit_url)
    committed: dict[str, float] = {}
    await transport.start()
    await asyncio.wait_for(transport.connected.wait(), 30)
    relay = asyncio.create_task(bus.run_relay())
    each = rate / producers
    stop_at = time.perf_counter() + duration

    async def produce(worker: int) -> None:
        n = 0
        next_at = time.perf_counter()
        while next_at < stop_at:
            async with db.unit_of_work() as session:
                event_id = publish(session, EVENT, Tick(n=worker * 10_000_000 + n))
            committed[str(event_id)] = time.time()
            n += 1
            next_at += 1 / each
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    started = time.time()
    await asyncio.gather(*(produce(w) for w in range(producers)))
    applied: dict[str, float] = {}
    deadline = time.perf_counter() + 60
    while len(applied) < len(committed) and time.perf_counter() < deadline:
        await asyncio.sleep(0.3)
        applied = dict(
            (key, float(value))
            for key, value in (line.split() for line in out.read_text().splitlines() if line)
        )
    relay.cancel()
    await transport.stop()
    await db.dispose()
    finished = max(applied.values(), default=started)
    latencies = sorted((applied[i] - committed[i]) * 1000 for i in committed if i in applied)
    quantile = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {
        "events": len(committed),
        "applied": len(applied),
        "lost": len(committed) - len(latencies),
        "target_rate": rate,
        "throughput_per_s": round(len(applied) / (finished - started), 1),
        "latency_ms": {
            "p50": round(quantile[49], 2),
            "p90": round(quantile[89], 2),
            "p99": round(quantile[98], 2),
            "max": round(latencies[-1], 2) if latencies else 0.0,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--producers", type=int, default=8)
    parser.add_argument("--consumer", nargs=3, metavar=("DB_URL", "RABBIT_URL", "OUT"))
    args = parser.parse_args()
    if args.consumer:
        db_url, rabbit_url, out = args.consumer
        asyncio.run(consumer(db_url, rabbit_url, Path(out)))
        return
    from tests.faults.private_rabbitmq import private_rabbitmq

    name = f"armillary_bench_events_{uuid.uuid4().hex[:6]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    db_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    rabbit = private_rabbitmq()
    try:
        upgrade(Settings(database_url=db_url, home=Path("/tmp/armillary-bench-events")))
        out = Path(tempfile.mkdtemp(prefix="armillary-bench-events-")) / "applied.txt"
        process = subprocess.Popen(
            [sys.executable, __file__, "--consumer", db_url, rabbit.url, str(out)],
            stdout=subprocess.DEVNULL,
        )
        while not out.exists():
            time.sleep(0.1)
        result = asyncio.run(run(args.rate, args.duration, args.producers, rabbit.url, db_url, out))
    finally:
        if "process" in locals():
            process.terminate()
            process.wait()
        rabbit.remove()
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    results = ROOT / "bench" / "results" / "events.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
