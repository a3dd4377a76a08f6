"""Rendering: Jinja2 with autoescape on, the console's security headers, and the pages the
console's errors turn into."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from .errors import ApiFailed, NotFoundPage, SignInRequired
from .graphs import TEMPLATE_HELPERS
from .session import (
    CSRF_FIELD,
    LOGIN_PATH,
    csrf_token,
    end_session,
    login_url,
    remember_csrf,
    safe_next,
)

TEMPLATES = Path(__file__).parent / "templates"

# No inline script or style, no eval, nothing from another origin; the console may not be
# framed, and its forms post only to itself.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # Pages show one user's data: no shared cache keeps them, no back button after sign-out.
    "Cache-Control": "no-store",
}


def _when(value: str | None) -> str:
    if not value:
        return "—"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    return moment.strftime("%Y-%m-%d %H:%M:%S")


environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    # Every value is escaped unless a template says otherwise (none does).
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters["when"] = _when
environment.globals.update(TEMPLATE_HELPERS)


def with_headers(response: Response) -> Response:
    response.headers.update(PAGE_HEADERS)
    return response


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    context.setdefault("user", getattr(request.state, "console_user", None))
    body = environment.get_template(template).render(
        request=request,
        csrf_field=CSRF_FIELD,
        csrf_token=csrf_token(request),
        path=request.url.path,
        # console.js keeps a form's draft until a page with a status below 400 follows it.
        page_status=status_code,
        **context,
    )
    response = HTMLResponse(body, status_code=status_code)
    remember_csrf(response, request)
    return with_headers(response)


def redirect(target: str) -> Response:
    return with_headers(RedirectResponse(target, status_code=303))


def _htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _to_sign_in(request: Request, _exc: Exception) -> Response:
    target = login_url(request)
    if _htmx(request):
        # A live fragment's session ended: send the whole tab to sign-in, returning to the
        # page the user was on (not to the fragment).
        current = urlsplit(request.headers.get("hx-current-url", ""))
        if current.path:
            page = current.path + (f"?{current.query}" if current.query else "")
            target = f"{LOGIN_PATH}?next={quote(safe_next(page), safe='')}"
        response: Response = with_headers(Response(status_code=200))
        response.headers["HX-Redirect"] = target
    else:
        response = redirect(target)
    end_session(response, request)
    return response


def _not_found(request: Request, _exc: Exception) -> Response:
    return render(request, "not_found.html", status_code=404)


def _failed(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status", 502)
    status = status if 400 <= status < 600 else 502
    return render(request, "error.html", status_code=status, message=str(exc))


def install_error_pages(app: FastAPI) -> None:
    app.add_exception_handler(SignInRequired, _to_sign_in)
    app.add_exception_handler(NotFoundPage, _not_found)
    app.add_exception_handler(ApiFailed, _failed)
