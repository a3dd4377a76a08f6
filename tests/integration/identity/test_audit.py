"""The audit log through the full app: one record per audited event, no secrets, filters and
pagination, and hash-chain verification that catches edits, deletions and truncations (even
when the database's checkpoint is rewritten to match), over the API and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, TEST_SECRET, Api, auth

from armillary.contracts.events import AuditEntry
from armillary.identity.audit import chain, service
from armillary.identity.components import identity_of
from armillary.kit.events import Delivery
from armillary.kit.settings import Settings

AGENT = "audit-tests/1.0"


class Audit:
    """Reads the log over the API as the admin."""

    def __init__(self, client: httpx.AsyncClient, admin_token: str) -> None:
        self.client = client
        self.token = admin_token

    async def query(self, **params: Any) -> dict[str, Any]:
        response = await self.client.get(
            "/api/v1/audit", params={"limit": 200, **params}, headers=auth(self.token)
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def mark(self) -> int:
        """The newest sequence number so far."""
        items = (await self.query(limit=1))["items"]
        return int(items[0]["seq"]) if items else 0

    async def since(self, mark: int) -> list[dict[str, Any]]:
        """Records appended after ``mark``, oldest first, without the reads of the log."""
        page = await self.query()
        assert page["total"] < 200, "the test log outgrew one page"
        items = [r for r in page["items"] if r["seq"] > mark and r["action"] != "audit.query"]
        return sorted(items, key=lambda r: r["seq"])

    async def expect_one(self, mark: int, action: str, **expected: Any) -> dict[str, Any]:
        """Exactly one new record, of ``action``, and the action filter finds it."""
        new = await self.since(mark)
        assert [r["action"] for r in new] == [action], new
        record = new[0]
        for key, value in expected.items():
            assert record[key] == value, (key, record)
        filtered = await self.query(action=action)
        assert [r["seq"] for r in filtered["items"] if r["seq"] > mark] == [record["seq"]]
        return record

    async def verify(self) -> dict[str, Any]:
        response = await self.client.get("/api/v1/audit/verify", headers=auth(self.token))
        assert response.status_code == 200, response.text
        return dict(response.json())


async def _token_pair(client: httpx.AsyncClient, email: str, password: str) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/auth/token",
        data={"username": email, "password": password},
        headers={"User-Agent": AGENT},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _me(client: httpx.AsyncClient, token: str) -> str:
    response = await client.get("/api/v1/auth/me", headers=auth(token))
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


async def test_each_audited_event_writes_exactly_one_record(api: Api) -> None:
    client = api.client
    admin_pair = await _token_pair(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    admin = admin_pair["access_token"]
    admin_id = await _me(client, admin)
    log = Audit(client, admin)
    secrets_seen: list[str] = [ADMIN_PASSWORD, admin, admin_pair["refresh_token"]]

    # Login success, with every request attribute recorded.
    mark = await log.mark()
    response = await client.post(
        "/api/v1/auth/token",
        data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
        headers={"User-Agent": AGENT, "X-Request-ID": "req-login-ok"},
    )
    assert response.status_code == 200
    secrets_seen += [response.json()["access_token"], response.json()["refresh_token"]]
    record = await log.expect_one(
        mark,
        "auth.login",
        outcome="success",
        actor_id=admin_id,
        resource_type="user",
        resource_id=admin_id,
        client_address="127.0.0.1",
        user_agent=AGENT,
        request_id="req-login-ok",
        service="identity",
    )
    assert datetime.fromisoformat(record["occurred_at"]).tzinfo is not None
    assert len(record["hash"]) == 64

    # Login failure: unknown account.
    mark = await log.mark()
    wrong_password = "wrong-password-0123456789"
    secrets_seen.append(wrong_password)
    response = await client.post(
        "/api/v1/auth/token",
        data={"username": "nobody@example.com", "password": wrong_password},
        headers={"User-Agent": AGENT, "X-Request-ID": "req-login-unknown"},
    )
    assert response.status_code == 401
    await log.expect_one(
        mark,
        "auth.login",
        outcome="failure",
        actor_id=None,
        actor_label="nobody@example.com",
        request_id="req-login-unknown",
        client_address="127.0.0.1",
        user_agent=AGENT,
    )

    # Login failure: wrong password for an existing account.
    mark = await log.mark()
    response = await client.post(
        "/api/v1/auth/token",
        data={"username": ADMIN_EMAIL, "password": wrong_password},
        headers={"X-Request-ID": "req-login-bad"},
    )
    assert response.status_code == 401
    await log.expect_one(
        mark, "auth.login", outcome="failure", resource_id=admin_id, request_id="req-login-bad"
    )

    # User creation.
    mark = await log.mark()
    ds_password = "ds-password-0123456789"
    secrets_seen.append(ds_password)
    response = await client.post(
        "/api/v1/users",
        json={
            "email": "ds@example.com",
            "name": "DS",
            "role": "data_scientist",
            "password": ds_password,
        },
        headers={**auth(admin), "User-Agent": AGENT, "X-Request-ID": "req-user-create"},
    )
    assert response.status_code == 201, response.text
    ds_id = response.json()["id"]
    await log.expect_one(
        mark,
        "users.create",
        outcome="success",
        actor_id=admin_id,
        resource_type="user",
        resource_id=ds_id,
        request_id="req-user-create",
        user_agent=AGENT,
    )

    # Refresh, then reuse of the rotated refresh token.
    ds_pair = await _token_pair(client, "ds@example.com", ds_password)
    secrets_seen += [ds_pair["access_token"], ds_pair["refresh_token"]]
    mark = await log.mark()
    response = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": ds_pair["refresh_token"]}
    )
    assert response.status_code == 200, response.text
    secrets_seen += [response.json()["access_token"], response.json()["refresh_token"]]
    await log.expect_one(
        mark, "auth.refresh", outcome="success", actor_id=ds_id, resource_type="token_family"
    )
    mark = await log.mark()
    response = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": ds_pair["refresh_token"]}
    )
    assert response.status_code == 401
    await log.expect_one(mark, "auth.refresh_reuse", outcome="denied", actor_id=ds_id)

    # Logout.
    ds_pair = await _token_pair(client, "ds@example.com", ds_password)
    ds = ds_pair["access_token"]
    secrets_seen += [ds, ds_pair["refresh_token"]]
    mark = await log.mark()
    response = await client.post(
        "/api/v1/auth/logout", json={"refresh_token": ds_pair["refresh_token"]}, headers=auth(ds)
    )
    assert response.status_code == 204, response.text
    await log.expect_one(mark, "auth.logout", outcome="success", actor_id=ds_id, resource_id=ds_id)

    # Projects and memberships (the data scientist owns the project).
    mark = await log.mark()
    response = await client.post(
        "/api/v1/projects", json={"slug": "audited", "name": "Audited"}, headers=auth(ds)
    )
    assert response.status_code == 201, response.text
    project_id = response.json()["id"]
    await log.expect_one(
        mark, "projects.create", actor_id=ds_id, resource_type="project", resource_id=project_id
    )
    mark = await log.mark()
    response = await client.patch(
        "/api/v1/projects/audited", json={"name": "Renamed"}, headers=auth(ds)
    )
    assert response.status_code == 200, response.text
    await log.expect_one(mark, "projects.update", actor_id=ds_id, resource_id=project_id)

    viewer = await api.create_user(admin, "user", "viewer@example.com")
    secrets_seen += [viewer["password"], viewer["token"]]
    mark = await log.mark()
    response = await client.put(
        f"/api/v1/projects/audited/members/{viewer['id']}",
        json={"role": "viewer"},
        headers=auth(ds),
    )
    assert response.status_code == 200, response.text
    await log.expect_one(
        mark,
        "projects.member_set",
        actor_id=ds_id,
        resource_type="membership",
        resource_id=f"{project_id}:{viewer['id']}",
    )
    mark = await log.mark()
    response = await client.delete(
        f"/api/v1/projects/audited/members/{viewer['id']}", headers=auth(ds)
    )
    assert response.status_code == 204, response.text
    await log.expect_one(
        mark, "projects.member_remove", actor_id=ds_id, resource_id=f"{project_id}:{viewer['id']}"
    )
    mark = await log.mark()
    response = await client.delete("/api/v1/projects/audited", headers=auth(ds))
    assert response.status_code == 204, response.text
    await log.expect_one(mark, "projects.delete", actor_id=ds_id, resource_id=project_id)

    # Authorization denials on a read: a plain user and a data scientist on the admin route.
    for token, user_id in ((viewer["token"], viewer["id"]), (ds, ds_id)):
        mark = await log.mark()
        response = await client.get(
            "/api/v1/users", headers={**auth(token), "X-Request-ID": "req-denied"}
        )
        assert response.status_code == 403
        await log.expect_one(
            mark, "users.list", outcome="denied", actor_id=user_id, request_id="req-denied"
        )

    # A state-changing request that failed validation.
    mark = await log.mark()
    short_password = "short-pw"
    response = await client.post(
        "/api/v1/users",
        json={
            "email": "bad@example.com",
            "name": "Bad",
            "role": "user",
            "password": short_password,
        },
        headers=auth(admin),
    )
    assert response.status_code == 422
    record = await log.expect_one(mark, "users.create", outcome="failure", actor_id=admin_id)
    assert short_password not in json.dumps(record)

    # Role change, then deactivation.
    mark = await log.mark()
    response = await client.patch(
        f"/api/v1/users/{ds_id}", json={"role": "user"}, headers=auth(admin)
    )
    assert response.status_code == 200, response.text
    record = await log.expect_one(
        mark, "users.role_change", actor_id=admin_id, resource_type="user", resource_id=ds_id
    )
    assert record["details"] == {"from": "data_scientist", "to": "user"}
    mark = await log.mark()
    response = await client.delete(f"/api/v1/users/{ds_id}", headers=auth(admin))
    assert response.status_code == 200, response.text
    await log.expect_one(mark, "users.deactivate", actor_id=admin_id, resource_id=ds_id)

    # Reading the log is itself audited, once per read.
    before = (await log.query(action="audit.query"))["total"]
    after = await log.query(action="audit.query")
    assert after["total"] == before + 1
    newest = after["items"][0]
    assert newest["actor_id"] == admin_id
    assert newest["resource_type"] == "audit"
    assert newest["details"]["action"] == "audit.query"

    # No secret anywhere in the log.
    everything = await log.query()
    dumped = json.dumps(everything)
    for secret in secrets_seen:
        assert secret not in dumped
    assert TEST_SECRET not in dumped
    assert "$argon2" not in dumped
    for item in everything["items"]:
        assert not any("password" in key or "token" in key for key in item["details"])

    assert (await log.verify())["ok"] is True


async def test_filters_and_pagination(api: Api) -> None:
    client = api.client
    admin = await api.admin_token()
    admin_id = await _me(client, admin)
    log = Audit(client, admin)
    ds = await api.create_user(admin, "data_scientist")
    project = await api.create_project(ds["token"], "filtered")
    response = await client.patch(
        "/api/v1/projects/filtered", json={"description": "x"}, headers=auth(ds["token"])
    )
    assert response.status_code == 200

    by_actor = await log.query(actor=ds["id"])
    assert by_actor["total"] >= 3
    assert {r["actor_id"] for r in by_actor["items"]} == {ds["id"]}
    assert {"auth.login", "projects.create", "projects.update"} <= {
        r["action"] for r in by_actor["items"]
    }

    by_resource = await log.query(resource_type="project", resource_id=project["id"])
    assert [r["action"] for r in by_resource["items"]] == ["projects.update", "projects.create"]
    assert (await log.query(resource_type="project", resource_id="nope"))["total"] == 0

    by_action = await log.query(action="users.create")
    assert by_action["total"] == 1
    assert by_action["items"][0]["resource_id"] == ds["id"]
    assert by_action["items"][0]["actor_id"] == admin_id

    # Time: since is inclusive, until exclusive.
    everything = (await log.query())["items"]
    pivot = next(r for r in everything if r["action"] == "projects.create")
    since = (await log.query(since=pivot["occurred_at"]))["items"]
    until = (await log.query(until=pivot["occurred_at"]))["items"]
    assert pivot["seq"] in {r["seq"] for r in since}
    assert pivot["seq"] not in {r["seq"] for r in until}
    at = datetime.fromisoformat(pivot["occurred_at"])
    assert all(datetime.fromisoformat(r["occurred_at"]) >= at for r in since)
    assert all(datetime.fromisoformat(r["occurred_at"]) < at for r in until)
    assert {r["seq"] for r in until}.isdisjoint({r["seq"] for r in since})
    assert (await log.query(since="2999-01-01T00:00:00Z"))["total"] == 0

    # Pagination over a filter the reads themselves do not grow.
    for _ in range(3):
        await api.token(ds["email"], ds["password"])
    logins = await log.query(action="auth.login")
    assert logins["total"] >= 5
    first = await log.query(action="auth.login", limit=2, offset=0)
    second = await log.query(action="auth.login", limit=2, offset=2)
    assert first["total"] == second["total"] == logins["total"]
    assert (first["limit"], first["offset"], second["offset"]) == (2, 0, 2)
    pages = [r["seq"] for r in first["items"] + second["items"]]
    assert pages == [r["seq"] for r in logins["items"][:4]]
    assert pages == sorted(pages, reverse=True)
    assert len(set(pages)) == 4

    response = await client.get("/api/v1/audit", params={"limit": 0}, headers=auth(admin))
    assert response.status_code == 422
    response = await client.get("/api/v1/audit", headers=auth(ds["token"]))
    assert response.status_code == 403


# --- verification ---------------------------------------------------------------------------


async def _seed(api: Api, users: int = 3) -> Audit:
    admin = await api.admin_token()
    for _ in range(users):
        await api.create_user(admin, "user")
    return Audit(api.client, admin)


async def _sql(app: FastAPI, statement: str, **params: Any) -> Any:
    async with app.state.runtime.db.engine.begin() as conn:
        return await conn.execute(text(statement), params)


async def _last_seq(app: FastAPI) -> int:
    return int((await _sql(app, "SELECT max(seq) FROM identity_audit_records")).scalar_one())


def _cli_verify(settings: Settings) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARMILLARY_")}
    env.update(
        ARMILLARY_DATABASE_URL=str(settings.database_url),
        ARMILLARY_HOME=str(settings.home),
        ARMILLARY_SECRET_KEY=TEST_SECRET,
    )
    return subprocess.run(
        [sys.executable, "-c", "from armillary.cli.main import app; app()", "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _problems(report: dict[str, Any]) -> str:
    assert report["ok"] is False, report
    return "\n".join(report["problems"])


async def test_verify_ok_on_an_intact_log_api_and_cli(
    api: Api, app: FastAPI, settings: Settings
) -> None:
    log = await _seed(api)
    report = await log.verify()
    assert report["ok"] is True, report
    assert report["problems"] == []
    assert report["records_checked"] == report["last_seq"] >= 7
    assert report["checkpoint_seq"] == report["last_seq"]
    # The verification's own record has been appended and checkpointed outside since.
    checkpoint = json.loads((settings.home / "audit" / "checkpoint.json").read_text())
    assert checkpoint["seq"] == await _last_seq(app) == report["last_seq"] + 1

    result = _cli_verify(settings)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "intact" in result.stdout


async def test_verify_detects_an_edited_action(api: Api, app: FastAPI) -> None:
    log = await _seed(api)
    await _sql(app, "UPDATE identity_audit_records SET action = 'auth.logout' WHERE seq = 3")
    assert "record 3 was altered" in _problems(await log.verify())


async def test_verify_detects_edited_details(api: Api, app: FastAPI) -> None:
    log = await _seed(api)
    seq = int(
        (
            await _sql(
                app, "SELECT min(seq) FROM identity_audit_records WHERE action = 'users.create'"
            )
        ).scalar_one()
    )
    await _sql(
        app,
        "UPDATE identity_audit_records SET details = CAST(:d AS json) WHERE seq = :seq",
        d=json.dumps({"email": "someone-else@example.com", "role": "user"}),
        seq=seq,
    )
    assert f"record {seq} was altered" in _problems(await log.verify())


async def test_verify_detects_a_deleted_middle_record(api: Api, app: FastAPI) -> None:
    log = await _seed(api)
    await _sql(app, "DELETE FROM identity_audit_records WHERE seq = 4")
    problems = _problems(await log.verify())
    assert "records 4..4 are missing" in problems
    assert "record 5 does not link" in problems


async def test_verify_detects_a_truncated_tail(api: Api, app: FastAPI) -> None:
    log = await _seed(api)
    last = await _last_seq(app)
    await _sql(app, "DELETE FROM identity_audit_records WHERE seq > :s", s=last - 2)
    problems = _problems(await log.verify())
    assert f"it ends at record {last - 2}" in problems
    assert "truncated" in problems


async def test_verify_detects_a_truncation_with_a_rewritten_database_checkpoint(
    api: Api, app: FastAPI, settings: Settings
) -> None:
    """The attacker deletes the tail and rewrites the head row so the database is consistent,
    even with a valid signature: only the checkpoint outside the database can tell."""
    log = await _seed(api)
    last = await _last_seq(app)
    new_end = last - 3
    await _sql(app, "DELETE FROM identity_audit_records WHERE seq > :s", s=new_end)
    new_hash = (
        await _sql(app, "SELECT hash FROM identity_audit_records WHERE seq = :s", s=new_end)
    ).scalar_one()
    signature = chain.checkpoint_signature(chain.derive_key(TEST_SECRET), new_end, new_hash)
    await _sql(
        app,
        "UPDATE identity_audit_head SET seq = :s, hash = :h, signature = :sig",
        s=new_end,
        h=new_hash,
        sig=signature,
    )
    report = await log.verify()
    problems = _problems(report)
    assert report["last_seq"] == new_end
    assert report["checkpoint_seq"] == last
    assert "the log was truncated" in problems
    assert "database checkpoint" not in problems  # the database copy alone looks consistent
    assert len(report["problems"]) == 1

    result = _cli_verify(settings)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "truncated" in result.stderr


async def test_a_truncation_stays_detected_while_the_log_grows_again(
    api: Api, app: FastAPI
) -> None:
    """After the tail is cut and the head row rewritten, new records must not move the
    outside checkpoint onto the forged chain (that would erase the evidence)."""
    log = await _seed(api, users=1)
    last = await _last_seq(app)
    new_end = last - 2
    await _sql(app, "DELETE FROM identity_audit_records WHERE seq > :s", s=new_end)
    new_hash = (
        await _sql(app, "SELECT hash FROM identity_audit_records WHERE seq = :s", s=new_end)
    ).scalar_one()
    signature = chain.checkpoint_signature(chain.derive_key(TEST_SECRET), new_end, new_hash)
    await _sql(
        app,
        "UPDATE identity_audit_head SET seq = :s, hash = :h, signature = :sig",
        s=new_end,
        h=new_hash,
        sig=signature,
    )
    admin = log.token
    for _ in range(4):  # more records than were cut
        await api.create_user(admin, "user")
    assert await _last_seq(app) > last + 2
    assert _problems(await log.verify())


async def test_verify_detects_a_forged_outside_checkpoint(
    api: Api, app: FastAPI, settings: Settings
) -> None:
    log = await _seed(api, users=1)
    path: Path = settings.home / "audit" / "checkpoint.json"
    data = json.loads(path.read_text())
    data["seq"] = 1
    path.write_text(json.dumps(data))
    assert "outside the database is invalid" in _problems(await log.verify())
    path.unlink()
    assert "outside the database is missing" in _problems(await log.verify())


@pytest.mark.parametrize("column", ["prev_hash", "hash"])
async def test_verify_detects_rewritten_hash_fields(api: Api, app: FastAPI, column: str) -> None:
    log = await _seed(api, users=1)
    await _sql(app, f"UPDATE identity_audit_records SET {column} = :h WHERE seq = 2", h="f" * 64)  # noqa: S608
    assert "record 2" in _problems(await log.verify())


async def test_entries_appended_during_verification_are_not_tampering(
    api: Api, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verification reads the rows, then the database checkpoint: entries committed in
    between move the checkpoint past the rows read. They are read and linked on, not reported
    as a mismatch (which is what a busy distributed platform saw)."""
    log = await _seed(api)
    runtime = app.state.runtime
    original = service._ChainWalk.read
    appended: list[int] = []

    async def read_then_append(walk: service._ChainWalk, session: Any) -> None:
        await original(walk, session)
        if not appended:
            for _ in range(2):
                async with runtime.db.sessionmaker() as other, other.begin():
                    await identity_of(runtime).audit_log.append(other, _delivery())
            appended.append(await _last_seq(app))

    monkeypatch.setattr(service._ChainWalk, "read", read_then_append)
    report = await log.verify()
    assert report["ok"] is True, report
    assert report["last_seq"] == appended[0]  # read on to the checkpoint that moved


async def test_rows_past_the_database_checkpoint_fail_verification(api: Api, app: FastAPI) -> None:
    """Reading on stops at the signed checkpoint: rows added after it without moving it (no
    key to sign it) are a mismatch."""
    log = await _seed(api)
    last = await _last_seq(app)
    await _sql(
        app,
        "INSERT INTO identity_audit_records (seq, event_id, occurred_at, recorded_at, service, "
        "action, outcome, prev_hash, hash, details) SELECT seq + 1, :event, occurred_at, "
        "recorded_at, service, action, outcome, hash, hash, details "
        "FROM identity_audit_records WHERE seq = :s",
        event=str(uuid.uuid4()),
        s=last,
    )
    assert "does not match the log's end" in _problems(await log.verify())


def _delivery() -> Delivery:
    entry = AuditEntry(
        occurred_at=datetime.now(UTC),
        service="identity",
        actor_id=None,
        action="test.concurrent",
        resource_type=None,
        resource_id=None,
        outcome="success",
        client_address=None,
        user_agent=None,
        request_id=None,
    )
    return Delivery(id=uuid.uuid4(), type=AuditEntry.TYPE, payload=entry.model_dump(mode="json"))
