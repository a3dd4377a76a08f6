"""F6 (item 4): a task that prints or returns a token (its own, or one it found) leaves it in
logs, outputs and errors that every viewer reads. Token-shaped strings are masked before they
are stored: JWTs, serving API keys and bearer credentials, also when split across writes."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from tests.conftest import Api
from tests.security.test_job_token_scope import Job_

from armillary.kit.db import utcnow
from armillary.kit.redaction import REDACTED, redact_token_bytes, redact_tokens
from armillary.kit.storage import StorageSettings
from armillary.kit.storage.local import LocalObjectStore
from armillary.workflows.execution import claims
from armillary.workflows.execution.protocol import AttemptResult, Outcome
from armillary.workflows.jobs.models import TaskAttempt, TaskRun
from armillary.workflows.logs.store import LogWriter, chunks

JWT = (
    "eyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCJ9"
    ".eyJzdWIiOiJ1c2VyIiwic2NvcGUiOiJqb2IifQ.c2lnbmF0dXJlLXBhcnQ"
)
API_KEY = "amk_" + "Q" * 43


def test_token_shapes_are_masked_and_keys_are_kept() -> None:
    text = f"token={JWT} key {API_KEY} Authorization: Bearer s3cr3t-opaque-value done"
    masked = redact_tokens({"tokens": 12, "log": [text], "nested": {"auth": JWT}})
    assert masked["tokens"] == 12  # a key named like a secret is data in outputs
    assert JWT not in str(masked)
    assert API_KEY not in str(masked)
    assert "s3cr3t-opaque-value" not in str(masked)
    assert masked["log"][0].endswith("done")
    assert redact_token_bytes(f"x {JWT}\n".encode()) == f"x {REDACTED}\n".encode()


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "objects", StorageSettings(), signing_secret="s" * 32)


async def stored_log(store: LocalObjectStore, where: tuple[uuid.UUID, uuid.UUID]) -> bytes:
    keys = [info.key for info in await chunks(store, where[0], where[1], "leak", 1)]
    return b"".join([await store.get_bytes(key) for key in keys])


async def test_a_token_printed_in_pieces_is_masked_in_the_stored_log(
    store: LocalObjectStore,
) -> None:
    where = (uuid.uuid4(), uuid.uuid4())
    # Tiny chunks: every write is flushed at once, so the token crosses chunk boundaries.
    writer = LogWriter(store, *where, "leak", 1, flush_seconds=60, flush_bytes=8, max_bytes=1 << 20)
    line = f"my token is {JWT} and my key {API_KEY}\n".encode()
    for start in range(0, len(line), 7):
        await writer.write(line[start : start + 7])
    await writer.write(b"no newline at the end: Bearer ")
    await writer.write(JWT.encode())
    await writer.close()
    text = await stored_log(store, where)
    assert JWT.encode() not in text
    assert API_KEY.encode() not in text
    for piece in (JWT[:40], JWT[40:80], JWT[-30:]):
        assert piece.encode() not in text
    assert text.startswith(b"my token is " + REDACTED.encode())
    assert text.endswith(b"no newline at the end: " + REDACTED.encode())


async def test_a_long_partial_line_is_not_held_back_forever(store: LocalObjectStore) -> None:
    where = (uuid.uuid4(), uuid.uuid4())
    writer = LogWriter(
        store, *where, "leak", 1, flush_seconds=60, flush_bytes=1024, max_bytes=1 << 20
    )
    await writer.write(b"x" * 20_000)  # a progress bar without newlines
    assert len(await stored_log(store, where)) == 20_000
    await writer.close()


async def test_outputs_errors_and_reports_are_stored_without_tokens(app: FastAPI, api: Api) -> None:
    job = Job_(app, api)
    await job.start()
    result = AttemptResult(
        Outcome.SUCCEEDED,
        {"found": f"Bearer {JWT}", "keys": [API_KEY], "tokens": 3, "report": {"note": JWT}},
        None,
        0,
        {},
        Path("/nonexistent"),
    )
    async with job.runtime.db.unit_of_work() as session:
        await claims.report(session, job.claim, result, utcnow())
    async with job.runtime.db.sessionmaker() as session:
        run = await session.scalar(
            select(TaskRun).where(TaskRun.job_id == job.job_id, TaskRun.name == job.claim.task)
        )
        assert run is not None
        assert run.outputs["tokens"] == 3
        assert JWT not in str(run.outputs)
        assert API_KEY not in str(run.outputs)
        assert run.report == {"note": REDACTED}


async def test_a_failed_attempts_error_is_stored_without_tokens(app: FastAPI, api: Api) -> None:
    job = Job_(app, api)
    await job.start()
    failed = AttemptResult(
        Outcome.FAILED, None, f"ValueError: bad token {JWT}", 1, {}, Path("/nonexistent")
    )
    async with job.runtime.db.unit_of_work() as session:
        await claims.report(session, job.claim, failed, utcnow())
    async with job.runtime.db.sessionmaker() as session:
        attempt = await session.scalar(
            select(TaskAttempt).where(TaskAttempt.id == job.claim.attempt_id)
        )
        assert attempt is not None
        assert attempt.reason == f"ValueError: bad token {REDACTED}"
