"""Every route of the app answers 401 to an anonymous caller, except an explicit allow-list;
the OpenAPI document lists each protected route's problem responses."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.routing import BaseRoute, Host, Mount, WebSocketRoute

from armillary.kit.app_factory import PUBLIC_PATHS

PROBLEM = "application/problem+json"
_PARAM = re.compile(r"\{([^}:]+)(?::([^}]+))?\}")
_BODY_METHODS = {"POST", "PUT", "PATCH"}


def _flatten(routes: Sequence[BaseRoute]) -> Iterable[Any]:
    """Routes as the app serves them. FastAPI versions that keep included routers as one
    entry expose the effective routes through ``iter_route_contexts``."""
    try:
        from fastapi.routing import iter_route_contexts  # type: ignore[attr-defined]
    except ImportError:
        return routes
    return list(iter_route_contexts(routes))


def walk(routes: Sequence[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path template) of every HTTP endpoint, recursing into mounted apps."""
    for route in _flatten(routes):
        original = getattr(route, "original_route", route)
        if isinstance(original, WebSocketRoute):
            continue
        if isinstance(original, (Mount, Host)):
            mounted = getattr(original, "routes", None) or getattr(original.app, "routes", None)
            mount_path = getattr(route, "path", "") or ""
            if mounted is None:
                # An opaque ASGI app: it must protect its whole subtree.
                yield "GET", prefix + mount_path + "/{path:path}"
                continue
            yield from walk(mounted, prefix + mount_path)
            continue
        path = getattr(route, "path", None)
        if path is None:
            continue
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            yield method, prefix + path


def concrete(path: str) -> str:
    """The path with a plausible dummy value for each parameter."""

    def value(match: re.Match[str]) -> str:
        name, convertor = match.group(1), match.group(2)
        if convertor == "int":
            return "1"
        if convertor == "path":
            return "some/nested/path"
        if convertor == "uuid" or name.endswith("_id") or name == "id":
            return str(uuid.uuid4())
        return f"dummy-{name}"

    return _PARAM.sub(value, path)


def inventory(app: FastAPI) -> list[tuple[str, str]]:
    return sorted(set(walk(app.routes)))


def test_the_walk_sees_the_whole_app(app: FastAPI) -> None:
    """Guards the walker itself: if it stopped descending into routers or mounts, the
    401 check below would pass vacuously."""
    found = inventory(app)
    for expected in [
        ("POST", "/api/v1/auth/token"),
        ("GET", "/api/v1/auth/me"),
        ("PATCH", "/api/v1/users/{user_id}"),
        ("PUT", "/api/v1/projects/{project}/members/{user}"),
        ("DELETE", "/api/v1/projects/{project}/members/{user}"),
        ("GET", "/api/v1/audit/verify"),
        ("GET", "/healthz"),
        ("GET", "/docs"),
    ]:
        assert expected in found, expected
    assert len(found) >= 25


def test_walk_recurses_into_mounted_apps() -> None:
    sub = FastAPI()

    @sub.get("/inner/{thing_id}")
    async def inner(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    outer = FastAPI()
    outer.mount("/mounted", sub)
    found = set(walk(outer.routes))
    assert ("GET", "/mounted/inner/{thing_id}") in found


def test_every_allow_listed_path_exists(app: FastAPI) -> None:
    paths = {path for _method, path in inventory(app)}
    missing = sorted(PUBLIC_PATHS - paths)
    assert not missing, f"PUBLIC_PATHS names routes that do not exist: {missing}"


def is_console(template: str) -> bool:
    """The web console's pages (ADR 0038): a browser surface that signs in with a cookie and
    calls the API like any client, so its pages are checked by the console test below."""
    return template == "/" or template == "/ui" or template.startswith("/ui/")


# Console pages an anonymous browser may see: sign-in, its assets, the redirects to /ui.
CONSOLE_PUBLIC = {
    ("GET", "/"),
    ("GET", "/ui"),
    ("GET", "/ui/login"),
    ("POST", "/ui/login"),
    ("GET", "/ui/static/{path:path}"),
}


async def test_every_console_page_sends_an_anonymous_browser_to_sign_in(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    failures: list[str] = []
    pages = [(m, t) for m, t in inventory(app) if is_console(t)]
    assert len(pages) >= 10
    for method, template in pages:
        if (method, template) in CONSOLE_PUBLIC:
            continue
        response = await client.request(method, concrete(template))
        location = response.headers.get("location", "")
        if method == "GET" and not (
            response.status_code == 303 and location.startswith("/ui/login?next=")
        ):
            failures.append(f"{method} {template}: {response.status_code} {location}")
        # A write without a session is refused before anything is sent to the API (no CSRF
        # token, no Origin) or, with them, sent back to sign-in.
        if method == "POST" and response.status_code not in (303, 403):
            failures.append(f"{method} {template}: {response.status_code}")
    assert not failures, "\n".join(failures)


async def test_every_route_but_the_allow_list_answers_401_without_a_token(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    failures: list[str] = []
    checked = 0
    for method, template in inventory(app):
        if is_console(template):
            continue
        url = concrete(template)
        body: dict[str, Any] = {"json": {}} if method in _BODY_METHODS else {}
        response = await client.request(method, url, **body)
        if template in PUBLIC_PATHS:
            # Public routes must really be reachable anonymously (the list must not hide a
            # route that then refuses everyone).
            if response.status_code == 401:
                failures.append(f"{method} {template}: public route answered 401")
            continue
        checked += 1
        if response.status_code != 401:
            failures.append(f"{method} {template}: {response.status_code} {response.text[:200]}")
            continue
        if method != "HEAD":
            if not response.headers.get("content-type", "").startswith(PROBLEM):
                failures.append(f"{method} {template}: 401 without problem+json")
            elif response.json().get("status") != 401:
                failures.append(f"{method} {template}: problem body without status 401")
        if not response.headers.get("www-authenticate", "").lower().startswith("bearer"):
            failures.append(f"{method} {template}: 401 without WWW-Authenticate: Bearer")
    assert not failures, "\n".join(failures)
    assert checked >= 20


async def test_an_invalid_token_is_as_good_as_none(app: FastAPI, client: httpx.AsyncClient) -> None:
    """The same walk with a garbage bearer token: no route treats 'some token' as enough."""
    failures = []
    for method, template in inventory(app):
        if template in PUBLIC_PATHS or is_console(template):
            continue
        body: dict[str, Any] = {"json": {}} if method in _BODY_METHODS else {}
        response = await client.request(
            method, concrete(template), headers={"Authorization": "Bearer not.a.token"}, **body
        )
        if response.status_code != 401:
            failures.append(f"{method} {template}: {response.status_code}")
    assert not failures, "\n".join(failures)


async def test_openapi_lists_problem_responses_of_protected_routes(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert "Problem" in schema["components"]["schemas"]
    failures: list[str] = []
    protected = 0
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation["responses"]
            expected: set[str] = {"429", "500"}
            if path not in PUBLIC_PATHS:
                protected += 1
                expected |= {"401", "403"}
            if "{" in path:
                expected.add("404")
            if operation.get("requestBody") or operation.get("parameters"):
                expected.add("422")  # the operation validates input
            for code in sorted(expected):
                if code not in responses:
                    failures.append(f"{method.upper()} {path}: no {code} response")
                    continue
                if PROBLEM not in responses[code].get("content", {}):
                    failures.append(f"{method.upper()} {path}: {code} is not problem+json")
    assert not failures, "\n".join(failures)
    assert protected >= 15


async def test_openapi_documents_the_bearer_scheme(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    schemes = schema["components"].get("securitySchemes", {})
    assert any(s.get("type") == "http" and s.get("scheme") == "bearer" for s in schemes.values())
    me = schema["paths"]["/api/v1/auth/me"]["get"]
    assert me.get("security"), "protected operations declare their security requirement"


async def test_docs_are_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "swagger" in response.text.lower()
    assert "/openapi.json" in response.text
