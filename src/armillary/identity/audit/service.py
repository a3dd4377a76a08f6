"""Appends audit entries to the hash chain, checkpoints its head, and verifies it.

The head is checkpointed with an HMAC signature in the database and, after every commit, in a
file outside it. Verification recomputes every link and compares the end of the log with the
outside checkpoint, so an edited, deleted or truncated record is found even when the attacker
also rewrote the database's copy of the checkpoint.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.contracts.events import AuditEntry
from armillary.kit.db import after_commit, utcnow
from armillary.kit.events import Delivery

from . import chain
from .models import AuditChainHead, AuditRecord

_HEAD_ID = 1

log = structlog.get_logger("armillary.audit")


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    signature: str


@dataclass
class VerifyReport:
    ok: bool = True
    records_checked: int = 0
    last_seq: int = 0
    checkpoint_seq: int | None = None
    problems: list[str] = field(default_factory=list)

    def fail(self, problem: str) -> None:
        self.ok = False
        if len(self.problems) < 100:
            self.problems.append(problem)


class CheckpointFile:
    """The chain head kept outside the database (a file under ARMILLARY_HOME)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> Checkpoint | None:
        try:
            data = json.loads(self.path.read_text())
            return Checkpoint(int(data["seq"]), str(data["hash"]), str(data["signature"]))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            return Checkpoint(-1, "", "")  # unreadable: verification reports it

    def write(self, checkpoint: Checkpoint, *, resign: bool = False, restore: bool = False) -> None:
        """Replace the file atomically, never with an older head than it holds. ``resign``
        replaces only the signature of the very head it holds (a secret rotation);
        ``restore`` replaces whatever it holds (a restored backup's head)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_suffix(".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.read()
            if resign:
                if current is None or (current.seq, current.hash) != (
                    checkpoint.seq,
                    checkpoint.hash,
                ):
                    return
            elif not restore and current is not None and current.seq >= checkpoint.seq:
                return
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(
                json.dumps(
                    {
                        "seq": checkpoint.seq,
                        "hash": checkpoint.hash,
                        "signature": checkpoint.signature,
                        "written_at": utcnow().isoformat(),
                    }
                )
            )
            os.replace(tmp, self.path)


async def read_head(session: AsyncSession) -> Checkpoint | None:
    """The chain head the database holds (None before the first record)."""
    head = await session.get(AuditChainHead, _HEAD_ID)
    return Checkpoint(head.seq, head.hash, head.signature) if head is not None else None


class AuditLog:
    def __init__(
        self, secret: str, checkpoint_file: CheckpointFile, *, previous: Iterable[str] = ()
    ) -> None:
        self._key = chain.derive_key(secret)
        # Checkpoints signed under a platform secret this one replaced still verify until
        # `armillary secrets rotate` signs them again.
        self._previous_keys = [chain.derive_key(old) for old in previous]
        self.checkpoint_file = checkpoint_file

    def _signed(self, seq: int, head_hash: str, signature: str) -> bool:
        return any(
            chain.signature_valid(key, seq, head_hash, signature)
            for key in (self._key, *self._previous_keys)
        )

    async def resign(self, session: AsyncSession) -> int:
        """Sign the database head and the outside checkpoint again under the current secret
        when a previous one signed them; returns how many were signed again. A signature no
        configured secret made is left alone, for verification to report."""
        changed = 0
        head = await session.get(AuditChainHead, _HEAD_ID, with_for_update=True)
        if head is not None and self._needs_resign(head.seq, head.hash, head.signature):
            head.signature = chain.checkpoint_signature(self._key, head.seq, head.hash)
            changed += 1
        outside = await asyncio.to_thread(self.checkpoint_file.read)
        if outside is not None and self._needs_resign(outside.seq, outside.hash, outside.signature):
            signature = chain.checkpoint_signature(self._key, outside.seq, outside.hash)
            await asyncio.to_thread(
                self.checkpoint_file.write,
                Checkpoint(outside.seq, outside.hash, signature),
                resign=True,
            )
            changed += 1
        return changed

    async def checkpoint_restored_head(self, session: AsyncSession) -> bool:
        """After a restore: the outside checkpoint becomes the restored chain's head (its
        signature checked first), since the one outside may be ahead of the backup's point.
        Returns whether a head was written."""
        head = await session.get(AuditChainHead, _HEAD_ID)
        if head is None or not self._signed(head.seq, head.hash, head.signature):
            return False
        checkpoint = Checkpoint(head.seq, head.hash, head.signature)
        await asyncio.to_thread(self.checkpoint_file.write, checkpoint, restore=True)
        log.warning("audit_checkpoint_restored", seq=head.seq)
        return True

    def _needs_resign(self, seq: int, head_hash: str, signature: str) -> bool:
        if chain.signature_valid(self._key, seq, head_hash, signature):
            return False
        return self._signed(seq, head_hash, signature)

    async def append(self, session: AsyncSession, delivery: Delivery) -> None:
        """Event consumer: append one entry. Callers serialise appends (row lock, and the bus
        hands this consumer one event at a time per process)."""
        entry = AuditEntry.model_validate(delivery.payload)
        head = await session.scalar(
            select(AuditChainHead).where(AuditChainHead.id == _HEAD_ID).with_for_update()
        )
        if head is None:
            head = AuditChainHead(id=_HEAD_ID, seq=0, hash=chain.GENESIS, signature="")
            session.add(head)
        seq = head.seq + 1
        fields = chain.record_fields(
            seq=seq,
            event_id=str(delivery.id),
            occurred_at=entry.occurred_at,
            service=entry.service,
            actor_id=str(entry.actor_id) if entry.actor_id else None,
            actor_label=entry.actor_label,
            action=entry.action,
            resource_type=entry.resource_type,
            resource_id=entry.resource_id,
            outcome=entry.outcome,
            client_address=entry.client_address,
            user_agent=entry.user_agent,
            request_id=entry.request_id,
            details=entry.details,
        )
        digest = chain.link_hash(head.hash, fields)
        session.add(
            AuditRecord(
                seq=seq,
                event_id=delivery.id,
                occurred_at=entry.occurred_at,
                service=entry.service,
                actor_id=entry.actor_id,
                actor_label=entry.actor_label,
                action=entry.action,
                resource_type=entry.resource_type,
                resource_id=entry.resource_id,
                outcome=entry.outcome,
                client_address=entry.client_address,
                user_agent=entry.user_agent,
                request_id=entry.request_id,
                details=entry.details,
                prev_hash=head.hash,
                hash=digest,
            )
        )
        # Checked before the head moves: the chain must still extend the outside checkpoint.
        extends_outside = await self._extends_outside(session, head)
        checkpoint = Checkpoint(seq, digest, chain.checkpoint_signature(self._key, seq, digest))
        head.seq, head.hash, head.signature = checkpoint.seq, checkpoint.hash, checkpoint.signature
        head.updated_at = utcnow()
        await session.flush()
        if not extends_outside:
            # The log no longer contains the checkpointed head (edited, or truncated and
            # regrown): keep the outside checkpoint as evidence instead of moving it.
            log.error("audit_checkpoint_diverged", seq=seq)
            return

        async def write_outside() -> None:
            await asyncio.to_thread(self.checkpoint_file.write, checkpoint)

        after_commit(session, write_outside)

    async def _extends_outside(self, session: AsyncSession, head: AuditChainHead) -> bool:
        """Whether the chain ending at ``head`` contains the outside checkpoint's head."""
        outside = await asyncio.to_thread(self.checkpoint_file.read)
        if outside is None or outside.seq > head.seq:
            return True  # nothing to extend, or a head the file keeps (it never goes back)
        if outside.seq == head.seq:
            return outside.hash == head.hash
        recorded = await session.scalar(
            select(AuditRecord.hash).where(AuditRecord.seq == outside.seq)
        )
        return recorded == outside.hash

    async def verify(self, session: AsyncSession) -> VerifyReport:
        """Recompute the chain and compare its end with both checkpoints.

        Entries may be appended while this runs, and each statement sees the rows committed
        when it starts: the database checkpoint, read after the rows, may be ahead of them.
        An append moves the checkpoint in the transaction that adds the row, so the rows that
        were missing are read and linked on (bounded rounds). A log that ends before its
        checkpoint once everything committed is read was truncated; rows past it fail."""
        walk = _ChainWalk(self.checkpoint_file.read())
        await walk.read(session)
        head = await session.get(AuditChainHead, _HEAD_ID)
        for _ in range(VERIFY_CATCH_UP_ROUNDS):
            if head is None or head.seq <= walk.report.last_seq:
                break
            await walk.read(session)
            await session.refresh(head)
        if head is not None:
            self._compare_head(walk, head)
        return self._compare_outside(walk)

    def _compare_head(self, walk: _ChainWalk, head: AuditChainHead) -> None:
        report = walk.report
        if not self._signed(head.seq, head.hash, head.signature):
            report.fail("the database checkpoint's signature is invalid")
        elif head.seq != report.last_seq or head.hash != walk.prev:
            report.fail(
                f"the database checkpoint (record {head.seq}) does not match the log's end "
                f"(record {report.last_seq})"
            )

    def _compare_outside(self, walk: _ChainWalk) -> VerifyReport:
        report, outside = walk.report, walk.outside
        if outside is None:
            if report.last_seq > 0:
                report.fail("the checkpoint outside the database is missing")
            return report
        report.checkpoint_seq = outside.seq
        if not self._signed(outside.seq, outside.hash, outside.signature):
            report.fail("the checkpoint outside the database is invalid or was tampered with")
        elif outside.seq > report.last_seq:
            report.fail(
                f"the log was truncated: it ends at record {report.last_seq}, the checkpoint "
                f"outside the database is at record {outside.seq}"
            )
        elif walk.hash_at_outside != outside.hash:
            report.fail(f"records up to {outside.seq} differ from the checkpointed chain")
        return report


# How many times verification reads on to reach a checkpoint that appends moved meanwhile.
VERIFY_CATCH_UP_ROUNDS = 5


@dataclass
class _ChainWalk:
    """The chain checked so far: each :meth:`read` links on from where the last one ended."""

    outside: Checkpoint | None
    report: VerifyReport = field(default_factory=VerifyReport)
    prev: str = chain.GENESIS
    hash_at_outside: str | None = None

    async def read(self, session: AsyncSession) -> None:
        report = self.report
        result = await session.stream_scalars(
            select(AuditRecord)
            .where(AuditRecord.seq > report.last_seq)
            .order_by(AuditRecord.seq)
            .execution_options(yield_per=1000)
        )
        async for record in result:
            expected = report.last_seq + 1
            if record.seq != expected:
                report.fail(f"records {expected}..{record.seq - 1} are missing")
            if record.prev_hash != self.prev:
                report.fail(f"record {record.seq} does not link to the record before it")
            if chain.link_hash(record.prev_hash, _fields_of(record)) != record.hash:
                report.fail(f"record {record.seq} was altered")
            if self.outside is not None and record.seq == self.outside.seq:
                self.hash_at_outside = record.hash
            self.prev = record.hash
            report.records_checked += 1
            report.last_seq = record.seq


def _fields_of(record: AuditRecord) -> dict[str, Any]:
    return chain.record_fields(
        seq=record.seq,
        event_id=str(record.event_id),
        occurred_at=record.occurred_at,
        service=record.service,
        actor_id=str(record.actor_id) if record.actor_id else None,
        actor_label=record.actor_label,
        action=record.action,
        resource_type=record.resource_type,
        resource_id=record.resource_id,
        outcome=record.outcome,
        client_address=record.client_address,
        user_agent=record.user_agent,
        request_id=record.request_id,
        details=record.details,
    )
