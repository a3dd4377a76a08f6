"""``GET /api/v1/system/engine``: the task queue and the workers, as the scheduler's gauges
read them from the database (admins only). The console's system-health page shows it; so can
any client, since it is the public API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from sqlalchemy import func, select

from armillary.kit.authz import Principal, require_platform_role
from armillary.kit.db import Database
from armillary.kit.deps import CurrentRuntime

from ..components import workflows_of
from ..jobs.models import Job, JobState
from ..scheduling import gauges

router = APIRouter(tags=["system"])

Admin = Annotated[Principal, Depends(require_platform_role())]


@router.get("/api/v1/system/engine", name="workflows.system.engine")
async def engine(_admin: Admin, runtime: CurrentRuntime) -> dict[str, Any]:
    lease = workflows_of(runtime).settings.lease_seconds
    found = await gauges.read(runtime.db, datetime.now(UTC), lease)
    # A worker is seen through the leases it renews (an idle one holds none and is not
    # listed): live while its heartbeats keep a lease alive, silent once they stopped (its
    # attempts are reclaimed; it stays listed for 15 minutes).
    workers = [
        {
            "id": worker,
            "heartbeat_age_seconds": round(age, 3),
            "state": "live" if age < lease else "silent",
        }
        for worker, age in sorted(found.heartbeat_age_seconds.items())
    ]
    return {
        "jobs_by_project": await _jobs_by_project(runtime.db),
        "tasks_queued": found.queued,
        "tasks_running": found.running,
        "oldest_queued_age_seconds": round(found.queue_age_seconds, 3),
        "live_workers": found.live_workers,
        "workers": workers,
        "lease_seconds": lease,
    }


async def _jobs_by_project(db: Database) -> list[dict[str, Any]]:
    """Each project's jobs by state, and since when its oldest queued job waits: one grouped
    query, instead of a listing per project and state."""
    statement = select(Job.project_id, Job.status, func.count(), func.min(Job.created_at)).group_by(
        Job.project_id, Job.status
    )
    projects: dict[str, dict[str, Any]] = {}
    async with db.read_connection() as connection:
        for project_id, state, count, oldest in await connection.execute(statement):
            entry = projects.setdefault(
                str(project_id),
                {"project_id": str(project_id), "total": 0, "oldest_queued_at": None}
                | {str(s): 0 for s in JobState},
            )
            entry[str(state)] = count
            entry["total"] += count
            if state == JobState.QUEUED and oldest is not None:
                entry["oldest_queued_at"] = oldest.isoformat()
    return sorted(projects.values(), key=lambda e: (-e["queued"], -e["total"], e["project_id"]))
