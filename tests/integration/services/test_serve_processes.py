"""The distributed shape for real: `armillary serve identity|data|registry|serving` as processes
of their own on the test's PostgreSQL and Redis, calling each other over HTTP (ADR 0021).

- each process serves its own service's routes; a user is verified through identity over HTTP;
  two copies of identity run side by side;
- the internal routes take a service credential of a caller the policy names, and nothing else:
  no user token, job token or API key, no credential meant for another service;
- `kill -9` of the registry: the calls that need it answer 503 problem+json with Retry-After
  within the client's timeout, data routes keep answering, and a restarted registry is back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from tests.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    REDIS_URL,
    TEST_SECRET,
    Api,
    auth,
    make_settings,
)
from tests.integration.registry.models_for_tests import skops_bytes
from tests.ports import free_port

from armillary.identity.client import IdentityClient
from armillary.kit.errors import ServiceUnavailable
from armillary.kit.service_auth import ServiceCredentials, write_key_pair
from armillary.kit.settings import SERVICE_PORTS

PROBLEM = "application/problem+json"
STARTED = ("identity", "data", "registry", "serving")
JOB_TOKENS = "/internal/v1/job-tokens"
RESOLVE = "/internal/v1/model-versions/resolve"
# Longer than the services' own client timeouts (10 s): a call that outlives it has hung.
CALL_TIMEOUT = 15.0
SETUP_TIMEOUT = 60.0


@dataclass
class Cluster:
    home: Path
    logs: Path
    env: dict[str, str]
    ports: dict[str, int]
    # Each service's private key, and the environment that gives it to that service alone.
    private_keys: dict[str, Path]
    service_env: dict[str, dict[str, str]]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def start(self, service: str, copy: str | None = None) -> None:
        """Start ``armillary serve <service>``; ``copy`` names another copy of it (on a port
        of its own)."""
        name = copy or service
        out = (self.logs / f"{name}.log").open("ab")
        where = ["--host", "127.0.0.1", "--port", str(self.ports[name])]
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "armillary.cli", "serve", service, *where],
            env={**self.env, **self.service_env.get(service, {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, *services: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        for service in services:
            while True:
                process = self.processes[service]
                assert process.poll() is None, self.output(service)
                try:
                    if httpx.get(f"{self.url(service)}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, self.output(service)
                time.sleep(0.2)

    def kill(self, service: str) -> None:
        process = self.processes.pop(service)
        process.send_signal(signal.SIGKILL)
        process.wait(30)

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    def output(self, service: str) -> str:
        return (self.logs / f"{service}.log").read_text(errors="replace")[-4000:]

    def credentials(self, service: str) -> ServiceCredentials:
        """What the test holds of ``service``: its private key, as that service would."""
        return ServiceCredentials.from_pem(service, self.private_keys[service].read_bytes())

    def client(self, service: str, timeout: float = CALL_TIMEOUT) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url(service), timeout=timeout)


def _clean_database(pg_url: str, truncate_sql: str) -> None:
    async def truncate() -> None:
        engine = create_async_engine(pg_url)
        async with engine.begin() as conn:
            await conn.execute(text(truncate_sql))
        await engine.dispose()

    asyncio.run(truncate())
    redis.Redis.from_url(REDIS_URL).flushdb()


@pytest.fixture(scope="module")
def cluster(
    pg_url: str, truncate_sql: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    _clean_database(pg_url, truncate_sql)
    root = tmp_path_factory.mktemp("serve")
    home, logs = root / "home", root / "logs"
    logs.mkdir()
    keys = {s: write_key_pair(home / "service-keys", s)[0] for s in SERVICE_PORTS}
    # Serving's key comes from "the secret store" (a file of its own, as a mounted secret),
    # not from the shared keys directory.
    secret = root / "secrets" / "serving.pem"
    secret.parent.mkdir()
    keys["serving"] = keys["serving"].rename(secret)
    service_env = {"serving": {"ARMILLARY_SERVICE_KEY_FILE": str(secret)}}
    ports = {service: free_port() for service in (*SERVICE_PORTS, "identity-2")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARMILLARY_")}
    env.update(
        {f"ARMILLARY_{s.upper()}_URL": f"http://127.0.0.1:{ports[s]}" for s in SERVICE_PORTS},
        ARMILLARY_HOME=str(home),
        ARMILLARY_DATABASE_URL=pg_url,
        ARMILLARY_REDIS_URL=REDIS_URL,
        ARMILLARY_SECRET_KEY=TEST_SECRET,
        ARMILLARY_ADMIN_EMAIL=ADMIN_EMAIL,
        ARMILLARY_ADMIN_PASSWORD=ADMIN_PASSWORD,
        ARMILLARY_ARGON2_TIME_COST="1",
        ARMILLARY_ARGON2_MEMORY_COST_KIB="8",
        ARMILLARY_RATE_LIMIT_AUTH="1000/minute",
        ARMILLARY_RATE_LIMIT_READ="100000/minute",
        ARMILLARY_RATE_LIMIT_WRITE="10000/minute",
        ARMILLARY_METRICS_PORT="0",
        ARMILLARY_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    found = Cluster(home, logs, env, ports, keys, service_env)
    try:
        for service in STARTED:
            found.start(service)
        # A second copy of identity, started at the same time as the first.
        found.start("identity", copy="identity-2")
        found.wait_ready(*STARTED, "identity-2")
        yield found
    finally:
        found.stop_all()


@dataclass
class Scene:
    """A data scientist's project with model ``churn`` version 1 in the registry."""

    user: dict[str, Any]
    project: dict[str, Any]

    @property
    def token(self) -> str:
        return str(self.user["token"])

    @property
    def slug(self) -> str:
        return str(self.project["slug"])


async def _scene(cluster: Cluster) -> Scene:
    # Set-up, not under test: a first request to a process just started may be slow on a
    # loaded machine (the registry imports its model loaders on first use).
    async with (
        cluster.client("identity", SETUP_TIMEOUT) as identity,
        cluster.client("registry", SETUP_TIMEOUT) as registry,
    ):
        api = Api(identity)
        user = await api.create_user(await api.admin_token(), "data_scientist")
        project = await api.create_project(user["token"])
        models = f"/api/v1/projects/{project['slug']}/models"
        created = await registry.post(models, json={"name": "churn"}, headers=auth(user["token"]))
        assert created.status_code == 201, created.text
        uploaded = await registry.post(
            f"{models}/churn/versions/upload",
            files={"file": ("model.skops", skops_bytes(), "application/octet-stream")},
            headers=auth(user["token"]),
        )
        assert uploaded.status_code == 201, uploaded.text
    return Scene(user, project)


def _deployment(name: str) -> dict[str, Any]:
    variant = {"name": "main", "model": "churn", "version": 1, "weight": 1}
    return {"name": name, "variants": [variant], "reason": "test"}


def _job_token_request(scene: Scene) -> dict[str, Any]:
    return {
        "user_id": scene.user["id"],
        "project_id": scene.project["id"],
        "job_id": str(uuid.uuid4()),
        "ttl_seconds": 300,
    }


def _assert_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers


def _bearer(credentials: ServiceCredentials, audience: str) -> dict[str, str]:
    return auth(credentials.token_for(audience))


async def test_each_service_serves_its_routes_and_internal_routes_take_service_credentials(
    cluster: Cluster,
) -> None:
    scene = await _scene(cluster)
    identity, data = cluster.client("identity"), cluster.client("data")
    registry, serving = cluster.client("registry"), cluster.client("serving")
    async with identity, data, registry, serving:
        datasets = f"/api/v1/projects/{scene.slug}/datasets"
        # Data verifies the user (and their project access) through identity over HTTP.
        listed = await data.get(datasets, headers=auth(scene.token))
        assert listed.status_code == 200, listed.text
        # Either copy of identity signs in; data accepts what the other copy issued.
        async with cluster.client("identity-2") as copy:
            again = await Api(copy).token(scene.user["email"], scene.user["password"])
        assert (await data.get(datasets, headers=auth(again))).status_code == 200
        # Only the process's own service: identity has no datasets, data no users.
        assert (await identity.get(datasets, headers=auth(scene.token))).status_code == 404
        assert (await data.get("/api/v1/users", headers=auth(scene.token))).status_code == 404
        # Serving resolves the model version on the registry's internal route, with its own
        # credential.
        deployments = f"/api/v1/projects/{scene.slug}/deployments"
        deployed = await serving.post(
            deployments, json=_deployment("churn-api"), headers=auth(scene.token)
        )
        assert deployed.status_code == 201, deployed.text
        key = await serving.post(
            f"{deployments}/churn-api/keys", json={"name": "app"}, headers=auth(scene.token)
        )
        assert key.status_code == 201, key.text
        api_key = key.json()["key"]
        # Workflows (its workers) mints job tokens with its own credential.
        workflows = cluster.credentials("workflows")
        minted = await identity.post(
            JOB_TOKENS, json=_job_token_request(scene), headers=_bearer(workflows, "identity")
        )
        assert minted.status_code == 201, minted.text
        job_token = minted.json()["token"]

        resolve_params = {"project_id": scene.project["id"], "model": "churn", "version": 1}

        async def job_tokens(headers: dict[str, str]) -> httpx.Response:
            return await identity.post(JOB_TOKENS, json=_job_token_request(scene), headers=headers)

        async def resolve(headers: dict[str, str]) -> httpx.Response:
            return await registry.get(RESOLVE, params=resolve_params, headers=headers)

        not_credentials = {
            "user token": auth(scene.token),
            "job token": auth(job_token),
            "API key": {"X-API-Key": api_key},
            "API key as bearer": auth(api_key),
            "nothing": {},
        }
        for call in (job_tokens, resolve):
            for name, headers in not_credentials.items():
                response = await call(headers)
                assert response.status_code == 401, (call.__name__, name, response.text)
                _assert_problem(response, 401)

        serving_key = cluster.credentials("serving")
        assert (await resolve(_bearer(serving_key, "registry"))).status_code == 200
        refused = {
            # serving's credential for the registry, replayed on identity
            "wrong audience": await job_tokens(_bearer(serving_key, "registry")),
            # serving's credential for identity: serving may never mint job tokens
            "not in policy": await job_tokens(_bearer(serving_key, "identity")),
        }
        refused["workflows on registry"] = await resolve(_bearer(workflows, "registry"))
        refused["identity-bound on registry"] = await resolve(_bearer(workflows, "identity"))
        for name, response in refused.items():
            assert response.status_code == 403, (name, response.text)
            _assert_problem(response, 403)
        # Routed or not, /internal is guarded.
        unknown = await registry.get("/internal/v1/anything", headers=auth(scene.token))
        _assert_problem(unknown, 401)


async def test_a_worker_mints_job_tokens_from_identitys_process_with_the_workflows_key(
    cluster: Cluster,
) -> None:
    from armillary.engine import job_token_issuer

    scene = await _scene(cluster)
    in_process = IdentityClient.over_http("http://127.0.0.1:9")  # stands in; never called
    request = {
        "user_id": uuid.UUID(scene.user["id"]),
        "project_id": uuid.UUID(scene.project["id"]),
        "job_id": uuid.uuid4(),
        "ttl_seconds": 300,
    }
    settings = make_settings(cluster.home, identity_url=cluster.url("identity"))
    assert job_token_issuer(make_settings(cluster.home), in_process) is in_process
    issuer = job_token_issuer(settings, in_process)
    try:
        token = await issuer.issue_job_token(**request)
    finally:
        await issuer.aclose()
    async with cluster.client("data") as data:
        datasets = f"/api/v1/projects/{scene.slug}/datasets"
        assert (await data.get(datasets, headers=auth(token.token))).status_code == 200
    # The same worker holding serving's key instead: identity refuses it.
    serving_key = SecretStr(cluster.private_keys["serving"].read_text())
    wrong = job_token_issuer(settings.model_copy(update={"service_key": serving_key}), in_process)
    try:
        with pytest.raises(ServiceUnavailable, match="could not issue"):
            await wrong.issue_job_token(**request)
    finally:
        await wrong.aclose()
        await in_process.aclose()


async def test_a_killed_registry_fails_its_callers_fast_and_data_keeps_answering(
    cluster: Cluster,
) -> None:
    scene = await _scene(cluster)
    data, serving = cluster.client("data"), cluster.client("serving")
    datasets = f"/api/v1/projects/{scene.slug}/datasets"
    deployments = f"/api/v1/projects/{scene.slug}/deployments"
    data_answers: list[int] = []
    stop = asyncio.Event()

    async def read_data() -> None:
        while not stop.is_set():
            response = await data.get(datasets, headers=auth(scene.token))
            data_answers.append(response.status_code)
            await asyncio.sleep(0.05)

    async with data, serving:
        reader = asyncio.create_task(read_data())
        try:
            cluster.kill("registry")
            for attempt in range(8):
                response = await serving.post(
                    deployments, json=_deployment(f"down-{attempt}"), headers=auth(scene.token)
                )
                _assert_problem(response, 503)
                assert int(response.headers["retry-after"]) > 0
            cluster.start("registry")
            cluster.wait_ready("registry")
            # Back once the breaker lets its probe through (reset after 10 s).
            deadline = time.monotonic() + 60
            while True:
                response = await serving.post(
                    deployments, json=_deployment("back"), headers=auth(scene.token)
                )
                if response.status_code == 201:
                    break
                _assert_problem(response, 503)
                assert time.monotonic() < deadline, response.text
                await asyncio.sleep(0.5)
        finally:
            stop.set()
            await reader
    assert data_answers, "the data service was never called"
    assert set(data_answers) == {200}, data_answers
