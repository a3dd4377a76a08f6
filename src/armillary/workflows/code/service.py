"""Code bundles: upload (checked, versioned, deduplicated against the latest), read, delete."""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import TypeGuard

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit import audit
from armillary.kit.authz import ProjectAccess
from armillary.kit.db import after_commit, new_id, on_rollback
from armillary.kit.errors import Conflict, DomainError, NotFound, Unprocessable
from armillary.kit.storage import ObjectClass, ObjectStore, class_tags
from armillary.kit.storage.keys import code_bundle_key

from ..components import SERVICE
from . import repository as repo
from .models import CodeBundle
from .schemas import NAME_PATTERN, CodeSettings
from .zipcheck import BundleSummary, UnsafeBundle, check_bundle

log = structlog.get_logger("armillary.workflows")

CONTENT_TYPES = {"py": "text/x-python", "zip": "application/zip"}
# An upload retries its number once per concurrent upload of the name that commits first;
# past this many, 409.
_VERSION_ATTEMPTS = 32


class PayloadTooLarge(DomainError):
    status = 413
    title = "Content too large"


class BundleIntegrityError(RuntimeError):
    """The stored bytes of a bundle do not match its recorded SHA-256."""


def is_bundle_name(name: str) -> bool:
    return re.fullmatch(NAME_PATTERN, name) is not None


def check_bundle_name(name: str) -> str:
    if not is_bundle_name(name):
        raise Unprocessable(
            "Bundle names are 1-64 characters: a lowercase letter, then lowercase letters, "
            "digits, '_' or '-'",
            extra={"name": name[:100]},
        )
    return name


def check_size(size: int, settings: CodeSettings) -> None:
    if size > settings.max_bundle_bytes:
        raise PayloadTooLarge(f"A code bundle is at most {settings.max_bundle_bytes} bytes")


async def checked(data: bytes, kind: str, settings: CodeSettings) -> BundleSummary:
    """The bundle's summary, or 422 naming the entry (and line) at fault."""
    if not data:
        raise Unprocessable("The code bundle is empty")
    try:
        # Parsing a zip's directory or compiling 20 MiB of source takes a while: off the loop.
        return await asyncio.to_thread(check_bundle, data, kind, settings.limits())
    except UnsafeBundle as exc:
        extra: dict[str, object] = {}
        if exc.entry is not None:
            extra["entry"] = exc.entry[:300]
        if exc.line is not None:
            extra["line"] = exc.line
        detail = exc.message if exc.entry is None else f"{exc.message}: {exc.entry[:300]!r}"
        raise Unprocessable(f"Refused code bundle: {detail}", extra=extra) from None


async def upload_bundle(
    session: AsyncSession,
    store: ObjectStore,
    settings: CodeSettings,
    access: ProjectAccess,
    name: str,
    kind: str,
    data: bytes,
) -> tuple[CodeBundle, bool]:
    """Store ``data`` as the next version of bundle ``name``, or return the latest version
    when its bytes are the same. Returns ``(bundle, created)``. An object written for a
    version that is rolled back is deleted."""
    check_bundle_name(name)
    check_size(len(data), settings)
    summary = await checked(data, kind, settings)
    sha256 = hashlib.sha256(data).hexdigest()
    latest = await repo.latest_bundle(session, access.project_id, name)
    if _same(latest, sha256, kind):
        return _unchanged(session, latest, sha256), False
    bundle = CodeBundle(
        id=new_id(),
        project_id=access.project_id,
        name=name,
        kind=kind,
        sha256=sha256,
        size_bytes=len(data),
        entries=summary.entries,
        created_by=access.principal.user_id,
    )
    # The row's own id in the key: no other upload writes (or on rollback deletes) it.
    bundle.object_key = code_bundle_key(access.project_id, bundle.id, sha256, kind)

    async def remove_object() -> None:
        await _delete_quietly(store, bundle.object_key)

    # Registered before the put starts: a failed put or insert leaves nothing behind.
    on_rollback(session, remove_object)
    await store.put_bytes(
        bundle.object_key, data, content_type=CONTENT_TYPES[kind], tags=class_tags(ObjectClass.RAW)
    )
    for _ in range(_VERSION_ATTEMPTS):
        bundle.version = (latest.version if latest is not None else 0) + 1
        try:
            async with session.begin_nested():
                session.add(bundle)
                await session.flush()
            break
        except IntegrityError:
            # A concurrent upload took the number: read the latest again (it has committed).
            latest = await repo.latest_bundle(session, access.project_id, name)
            if _same(latest, sha256, kind):
                await remove_object()
                return _unchanged(session, latest, sha256), False
    else:
        raise Conflict("The bundle is being uploaded concurrently; upload again")
    audit.record(
        session,
        action="code.upload",
        resource_type="code_bundle",
        resource_id=bundle.id,
        details={
            "project": access.project_slug,
            "name": name,
            "version": bundle.version,
            "kind": kind,
            "sha256": sha256,
            "size_bytes": bundle.size_bytes,
            "entries": bundle.entries,
        },
        service=SERVICE,
    )
    return bundle, True


def _same(latest: CodeBundle | None, sha256: str, kind: str) -> TypeGuard[CodeBundle]:
    return latest is not None and latest.sha256 == sha256 and latest.kind == kind


def _unchanged(session: AsyncSession, latest: CodeBundle, sha256: str) -> CodeBundle:
    audit.record(
        session,
        action="code.upload_unchanged",
        resource_type="code_bundle",
        resource_id=latest.id,
        details={"name": latest.name, "version": latest.version, "sha256": sha256},
        service=SERVICE,
    )
    return latest


async def get_bundle(session: AsyncSession, access: ProjectAccess, name: str) -> CodeBundle:
    """The latest version of the project's bundle ``name``, or 404."""
    bundle = (
        await repo.latest_bundle(session, access.project_id, name) if is_bundle_name(name) else None
    )
    if bundle is None:
        raise NotFound("Code bundle not found")
    return bundle


async def delete_bundle(
    session: AsyncSession, store: ObjectStore, access: ProjectAccess, name: str
) -> None:
    """Delete every version of the bundle; the objects go once the deletion has committed."""
    versions = (
        await repo.all_versions(session, access.project_id, name) if is_bundle_name(name) else []
    )
    if not versions:
        raise NotFound("Code bundle not found")
    keys = [v.object_key for v in versions]
    await repo.delete_all_versions(session, access.project_id, name)
    audit.record(
        session,
        action="code.delete",
        resource_type="code_bundle",
        resource_id=versions[-1].id,
        details={"project": access.project_slug, "name": name, "versions": len(versions)},
        service=SERVICE,
    )

    async def remove_objects() -> None:
        for key in keys:
            await _delete_quietly(store, key)

    after_commit(session, remove_objects)


async def bundle_bytes(store: ObjectStore, bundle: CodeBundle) -> bytes:
    """The bundle's bytes from the object store, checked against its SHA-256 (the worker
    passes them to :func:`~armillary.workflows.code.zipcheck.extract_bundle`)."""
    data = await store.get_bytes(bundle.object_key)
    if hashlib.sha256(data).hexdigest() != bundle.sha256:
        raise BundleIntegrityError(
            f"stored bytes of code bundle {bundle.name!r} v{bundle.version} do not match"
        )
    return data


async def _delete_quietly(store: ObjectStore, key: str) -> None:
    # The database is already settled: a failed delete leaves an orphan, not an error.
    try:
        await store.delete(key)
    except Exception:
        log.warning("code_bundle_object_delete_failed", key=key, exc_info=True)
