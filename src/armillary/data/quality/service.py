"""Quality reports on dataset versions: submitted by a job's quality task (or a person), kept
as a history per version; the latest is the version's current report."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from armillary.contracts.data import QualityReportIn
from armillary.kit import audit
from armillary.kit.authz import ProjectAccess
from armillary.kit.errors import NotFound

from ..components import SERVICE
from ..datasets.models import Dataset, DatasetVersion
from ..datasets.service import get_version
from . import repository as repo
from .models import QualityReport
from .schemas import QualityReportOut

MAX_REPORT_BYTES = 1024 * 1024
MAX_TASK_LENGTH = 128


def report_out(
    dataset: Dataset, version: DatasetVersion, report: QualityReport
) -> QualityReportOut:
    return QualityReportOut(
        id=report.id,
        dataset=dataset.name,
        version=version.number,
        job_id=report.job_id,
        task=report.task,
        passed=report.passed,
        score=report.score,
        report=report.report,
        created_by=report.created_by,
        created_at=report.created_at,
    )


async def submit(
    session: AsyncSession,
    access: ProjectAccess,
    ref: str,
    number: int,
    body: QualityReportIn,
    task: str | None,
) -> QualityReportOut:
    """Store ``body`` as the version's latest report. The job comes from the caller's job
    token (never from the body); ``task`` names the job's task that checked the data."""
    dataset, version = await get_version(session, access, ref, number)
    report = QualityReport(
        project_id=access.project_id,
        dataset_id=dataset.id,
        version_id=version.id,
        job_id=access.principal.job_id,
        task=task,
        passed=body.passed,
        score=body.score,
        report=body.model_dump(mode="json"),
        created_by=access.principal.user_id,
    )
    session.add(report)
    await session.flush()
    audit.record(
        session,
        action="datasets.quality_report",
        resource_type="dataset_version",
        resource_id=version.id,
        details={
            "dataset": dataset.name,
            "number": version.number,
            "report_id": str(report.id),
            "passed": body.passed,
            "score": body.score,
            "job_id": str(report.job_id) if report.job_id else None,
            "task": task,
        },
        service=SERVICE,
    )
    return report_out(dataset, version, report)


async def latest(
    session: AsyncSession, access: ProjectAccess, ref: str, number: int
) -> QualityReportOut:
    dataset, version = await get_version(session, access, ref, number)
    report = await repo.latest(session, version.id)
    if report is None:
        raise NotFound("This dataset version has no quality report")
    return report_out(dataset, version, report)


async def history(
    session: AsyncSession, access: ProjectAccess, ref: str, number: int, *, limit: int, offset: int
) -> tuple[list[QualityReportOut], int]:
    dataset, version = await get_version(session, access, ref, number)
    rows, total = await repo.page(session, version.id, limit=limit, offset=offset)
    return [report_out(dataset, version, row) for row in rows], total
