"""Datasets and their versions: upload, deduplicate, profile, download, soft delete."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any, cast

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit import audit
from armillary.kit.authz import ProjectAccess
from armillary.kit.db import after_commit, new_id, next_number, on_rollback, utcnow
from armillary.kit.errors import BadRequest, Conflict, NotFound
from armillary.kit.ids import parse_uuid
from armillary.kit.pagination import MAX_PARAM_INT
from armillary.kit.storage import LocalObjectStore, ObjectClass, class_tags, dataset_object_key

from ..components import SERVICE, Data
from ..holds import service as holds
from ..profiling.runner import InvalidDatasetFile, run_profiler
from . import repository as repo
from .formats import CONTENT_TYPES, detect_format
from .lineage import LINEAGE_FIELD, parse_lineage
from .models import Dataset, DatasetVersion
from .names import check_dataset_name
from .pipelined_put import PipelinedPut
from .schemas import DatasetCreate, DatasetFormat, DatasetUpdate, ProfileStatus
from .upload import SpooledUpload

log = structlog.get_logger("armillary.data")


async def create_dataset(
    session: AsyncSession, access: ProjectAccess, data: DatasetCreate
) -> Dataset:
    name = check_dataset_name(data.name)
    if await repo.dataset(session, access.project_id, name) is not None:
        raise Conflict("A dataset with this name already exists in the project")
    dataset = Dataset(
        project_id=access.project_id,
        name=name,
        description=data.description,
        tags=sorted(set(data.tags)),
        created_by=access.principal.user_id,
    )
    session.add(dataset)
    await session.flush()
    audit.record(
        session,
        action="datasets.create",
        resource_type="dataset",
        resource_id=dataset.id,
        details={"project": access.project_slug, "name": name},
        service=SERVICE,
    )
    return dataset


async def get_dataset(
    session: AsyncSession, access: ProjectAccess, ref: str, *, for_update: bool = False
) -> Dataset:
    if parse_uuid(ref) is None:
        check_dataset_name(ref)
    dataset = await repo.dataset(session, access.project_id, ref, for_update=for_update)
    if dataset is None:
        raise NotFound("Dataset not found")
    return dataset


async def update_dataset(
    session: AsyncSession, access: ProjectAccess, ref: str, data: DatasetUpdate
) -> Dataset:
    dataset = await get_dataset(session, access, ref)
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    if "description" in changes:
        dataset.description = changes["description"]
    if "tags" in changes:
        dataset.tags = sorted(set(changes["tags"]))
    await session.flush()
    audit.record(
        session,
        action="datasets.update",
        resource_type="dataset",
        resource_id=dataset.id,
        details={"fields": sorted(changes)},
        service=SERVICE,
    )
    return dataset


async def delete_dataset(
    session: AsyncSession, access: ProjectAccess, ref: str, *, force: bool = False
) -> None:
    """Soft delete. 409 while a model version holds one of its live versions, unless a
    platform admin forces it (``force``; anyone else: 403)."""
    holds.check_force(access, force)
    # Locked: a hold being recorded for one of its versions waits, or is seen.
    dataset = await get_dataset(session, access, ref, for_update=True)
    held = await holds.guard_dataset_delete(session, dataset, force=force)
    dataset.deleted_at = utcnow()
    details: dict[str, Any] = {"name": dataset.name}
    if held:
        details.update(forced=True, holds=held)
    audit.record(
        session,
        action="datasets.delete",
        resource_type="dataset",
        resource_id=dataset.id,
        details=details,
        service=SERVICE,
    )


async def add_version(
    session: AsyncSession,
    data: Data,
    access: ProjectAccess,
    ref: str,
    upload: SpooledUpload,
    pipelined: PipelinedPut | None = None,
) -> tuple[DatasetVersion, bool]:
    """Store an uploaded file as the dataset's next version, or return the existing version
    with identical bytes (its lineage unchanged). Returns ``(version, created)``. Nothing is
    left behind on failure: the spool file is always removed, a put still running is
    aborted, and an object written for a rolled-back version is deleted.

    The object goes under the new version's own id before the dataset's row is locked, so
    a slow upload holds no lock, and a rollback deletes only what this request wrote. Two
    uploads of the same bytes at once: the second to take the lock returns the first's
    version and deletes its own object. ``pipelined`` is the put that started while the
    body arrived (:mod:`.pipelined_put`); it completes only once the file is accepted."""
    keep_spool = False
    try:
        lineage = parse_lineage(upload.fields.get(LINEAGE_FIELD), access.principal)
        dataset = await get_dataset(session, access, ref)
        existing = await repo.version_by_hash(session, dataset.id, upload.sha256)
        if existing is not None:
            return existing, False
        fmt = detect_format(upload.fields.get("format"), upload.filename, upload.path)
        parent_id = await _parent_id(session, dataset, upload.fields.get("parent"))
        inline = upload.size <= data.settings.profile_inline_max_bytes
        running = await pipelined.claim(dataset.id, fmt) if pipelined is not None else None
        version_id = pipelined.version_id if pipelined is not None else new_id()
        key = dataset_object_key(access.project_id, dataset.id, version_id, fmt.value)

        async def remove_object() -> None:
            await data.store.delete(key)

        # Registered before the put ends: a failed check or a failed put removes it.
        on_rollback(session, remove_object)
        check = run_profiler(
            upload.path,
            fmt.value,
            "profile" if inline else "check",
            time_limit=data.settings.profile_timeout_seconds,
            threads=data.settings.profile_threads,
            in_memory_max_bytes=data.settings.profile_in_memory_max_bytes,
            started=await pipelined.take_profiler() if pipelined is not None else None,
        )
        if running is not None:
            # The parts already sent keep going while the file is checked; the upload
            # completes only if the check passes (else the finally below aborts it).
            answer = await check
            await running.finish(upload.size)
        else:
            answer = await _check_beside_put(data, check, key, upload, fmt)
        # Locked from here to commit: a twin upload committed meanwhile is seen, and waits.
        dataset = await get_dataset(session, access, ref, for_update=True)
        twin = await repo.version_by_hash(session, dataset.id, upload.sha256)
        if twin is not None:
            await remove_object()
            return twin, False
        version = DatasetVersion(
            id=version_id,
            dataset_id=dataset.id,
            project_id=access.project_id,
            number=await next_number(session, dataset, Dataset.version_counter),
            format=fmt.value,
            size_bytes=upload.size,
            sha256=upload.sha256,
            object_key=key,
            original_filename=upload.filename,
            columns=answer["schema"],
            row_count=answer.get("row_count"),
            profile=answer.get("columns"),
            profile_status=ProfileStatus.READY.value if inline else ProfileStatus.PENDING.value,
            parent_id=parent_id,
            lineage=lineage,
            created_by=access.principal.user_id,
        )
        session.add(version)
        await session.flush()
        audit.record(
            session,
            action="datasets.version_create",
            resource_type="dataset_version",
            resource_id=version.id,
            details={
                "dataset": dataset.name,
                "number": version.number,
                "sha256": upload.sha256,
                "size_bytes": upload.size,
            },
            service=SERVICE,
        )
        if not inline:
            keep_spool = True

            async def profile_later() -> None:
                data.spawn(_profile_in_background(data, version_id, upload))

            async def discard() -> None:
                upload.discard()

            after_commit(session, profile_later)
            on_rollback(session, discard)
        return version, True
    finally:
        if pipelined is not None:
            # Refused, deduplicated or failed before the put completed: abort it.
            await pipelined.abort()
        if not keep_spool:
            upload.discard()


async def _check_beside_put(
    data: Data,
    check: Coroutine[Any, Any, dict[str, Any]],
    key: str,
    upload: SpooledUpload,
    fmt: DatasetFormat,
) -> dict[str, Any]:
    """The check (or inline profile) and the put of the finished spool file, side by side:
    both only read it; a refused file's object goes with the rollback."""
    outcomes = await asyncio.gather(
        check,
        data.store.put_file(
            key,
            upload.path,
            content_type=CONTENT_TYPES[fmt],
            tags=class_tags(ObjectClass.RAW),
        ),
        return_exceptions=True,
    )
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return cast(dict[str, Any], outcomes[0])


async def _parent_id(
    session: AsyncSession, dataset: Dataset, parent: str | None
) -> uuid.UUID | None:
    if parent is None or parent == "":
        return None
    # ASCII digits within the bound of every number: '²' is a digit to isdigit(), and 2**63
    # overflows the database.
    if not (parent.isascii() and parent.isdigit()) or int(parent) > MAX_PARAM_INT:
        raise BadRequest("'parent' must be a version number of this dataset")
    found = await repo.version(session, dataset.id, int(parent))
    if found is None:
        raise BadRequest(f"Version {parent} of this dataset does not exist")
    return found.id


async def _profile_in_background(data: Data, version_id: uuid.UUID, upload: SpooledUpload) -> None:
    try:
        async with data.runtime.db.sessionmaker() as session:
            found = await session.get(DatasetVersion, version_id)
            if found is None:
                return
            fmt = found.format
        try:
            answer = await run_profiler(
                upload.path,
                fmt,
                "profile",
                time_limit=data.settings.profile_timeout_seconds,
                threads=data.settings.profile_threads,
                in_memory_max_bytes=data.settings.profile_in_memory_max_bytes,
            )
            status, error = ProfileStatus.READY, None
        except InvalidDatasetFile as exc:
            answer, status, error = {}, ProfileStatus.FAILED, exc.detail
        except Exception:
            log.exception("background_profile_failed", version_id=str(version_id))
            answer, status, error = {}, ProfileStatus.FAILED, "Profiling failed"
        async with data.runtime.db.unit_of_work() as session:
            version = await session.get(DatasetVersion, version_id)
            if version is None:
                return
            version.profile_status = status.value
            version.profile_error = error
            if answer:
                version.row_count = answer.get("row_count")
                version.profile = answer.get("columns")
                version.columns = answer.get("schema", version.columns)
    finally:
        upload.discard()


async def get_version(
    session: AsyncSession, access: ProjectAccess, ref: str, number: int
) -> tuple[Dataset, DatasetVersion]:
    dataset = await get_dataset(session, access, ref)
    version = await repo.version(session, dataset.id, number)
    if version is None:
        raise NotFound("Dataset version not found")
    return dataset, version


async def delete_version(
    session: AsyncSession, access: ProjectAccess, ref: str, number: int, *, force: bool = False
) -> None:
    """Soft delete: the bytes stay (lineage may point at them); the version is hidden. 409
    while a model version holds it, unless a platform admin forces it (anyone else: 403)."""
    holds.check_force(access, force)
    dataset = await get_dataset(session, access, ref, for_update=True)
    version = await repo.version(session, dataset.id, number)
    if version is None:
        raise NotFound("Dataset version not found")
    held = await holds.guard_version_delete(session, dataset, version, force=force)
    version.deleted_at = utcnow()
    version.deleted_by = access.principal.user_id
    details: dict[str, Any] = {"dataset": dataset.name, "number": number}
    if held:
        details.update(forced=True, holds=held)
    audit.record(
        session,
        action="datasets.version_delete",
        resource_type="dataset_version",
        resource_id=version.id,
        details=details,
        service=SERVICE,
    )


def record_download(
    session: AsyncSession, dataset: Dataset, version: DatasetVersion, how: str
) -> None:
    audit.record(
        session,
        action="datasets.download",
        resource_type="dataset_version",
        resource_id=version.id,
        details={"dataset": dataset.name, "number": version.number, "via": how},
        service=SERVICE,
    )


async def download_link(data: Data, version: DatasetVersion, base_url: str) -> tuple[str, int]:
    """A URL anyone holding it can fetch until it expires: presigned on S3, signed otherwise."""
    ttl = data.settings.download_link_ttl_seconds
    url = await data.store.presigned_get_url(version.object_key, timedelta(seconds=ttl))
    if url is not None:
        return url, ttl
    assert isinstance(data.store, LocalObjectStore)  # noqa: S101 - the only unsigned backend
    token = data.store.sign_download(version.object_key, utcnow() + timedelta(seconds=ttl))
    return f"{base_url.rstrip('/')}/api/v1/downloads/{token}", ttl
