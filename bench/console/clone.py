"""Copies of jobs that really ran, written straight into the platform's database: running
about 2,500 more task attempts through two workers takes minutes on a quiet machine and most
of an hour on a shared one, and the pages read the rows, not how they came to be.

Each copy is a job, its task runs and their attempts with new ids, every timestamp moved back
by the same amount (so the copies form an older history behind the real jobs), status,
errors, attempts and outcomes as the original's."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg

JOBS = "workflows_jobs"
TASK_RUNS = "workflows_task_runs"
ATTEMPTS = "workflows_task_attempts"


def _shifted(row: dict[str, Any], delta: timedelta) -> dict[str, Any]:
    return {k: (v - delta if isinstance(v, datetime) else v) for k, v in row.items()}


async def _rows(
    conn: asyncpg.Connection, table: str, column: str, ids: list[Any]
) -> list[dict[str, Any]]:
    # The table and column names are this module's constants, never input.
    query = f"SELECT * FROM {table} WHERE {column} = ANY($1::uuid[])"  # noqa: S608
    found = await conn.fetch(query, ids)
    return [dict(r) for r in found]


async def _copy(dsn: str, plan: list[tuple[str, timedelta]]) -> int:
    """``plan``: (template job id, how far back) for each copy."""
    conn = await asyncpg.connect(dsn)
    try:
        # JSON columns travel as text both ways.
        templates = sorted({uuid.UUID(job) for job, _ in plan})
        jobs = {r["id"]: r for r in await _rows(conn, JOBS, "id", templates)}
        runs = await _rows(conn, TASK_RUNS, "job_id", templates)
        attempts = await _rows(conn, ATTEMPTS, "task_run_id", [r["id"] for r in runs])
        runs_of: dict[Any, list[dict[str, Any]]] = {}
        for run in runs:
            runs_of.setdefault(run["job_id"], []).append(run)
        attempts_of: dict[Any, list[dict[str, Any]]] = {}
        for attempt in attempts:
            attempts_of.setdefault(attempt["task_run_id"], []).append(attempt)
        new: dict[str, list[dict[str, Any]]] = {JOBS: [], TASK_RUNS: [], ATTEMPTS: []}
        for job_id, delta in plan:
            template = jobs[uuid.UUID(job_id)]
            job = {**_shifted(template, delta), "id": uuid.uuid4(), "idempotency_key": None}
            new[JOBS].append(job)
            for run in runs_of.get(template["id"], []):
                copy = {**_shifted(run, delta), "id": uuid.uuid4(), "job_id": job["id"]}
                new[TASK_RUNS].append(copy)
                for attempt in attempts_of.get(run["id"], []):
                    moved = _shifted(attempt, delta)
                    new[ATTEMPTS].append({**moved, "id": uuid.uuid4(), "task_run_id": copy["id"]})
        async with conn.transaction():
            for table, rows in new.items():
                if rows:
                    columns = list(rows[0])
                    records = [tuple(r[c] for c in columns) for r in rows]
                    await conn.copy_records_to_table(table, records=records, columns=columns)
        return len(new[JOBS])
    finally:
        await conn.close()


def copy_jobs(dsn: str, plan: list[tuple[str, timedelta]]) -> int:
    return asyncio.run(_copy(dsn, plan))
