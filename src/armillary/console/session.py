"""The browser session: the user's access token in an HttpOnly cookie, and CSRF protection
for every write (a per-session token in each form, checked against a cookie, plus an Origin
check)."""

from __future__ import annotations

import secrets
from urllib.parse import quote, urlsplit

from fastapi import Request, Response

from .errors import ApiFailed, SignInRequired

SESSION_COOKIE = "armillary_session"
REFRESH_COOKIE = "armillary_refresh"
CSRF_COOKIE = "armillary_csrf"
CSRF_FIELD = "csrf_token"
UI = "/ui"
LOGIN_PATH = f"{UI}/login"
LOGOUT_PATH = f"{UI}/logout"


def session_token(request: Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE) or None


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _set(
    response: Response, request: Request, name: str, value: str, max_age: int, path: str
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def start_session(
    response: Response, request: Request, access_token: str, refresh_token: str, expires_in: int
) -> None:
    """The browser keeps the session exactly as long as the access token lives: the console
    never renews it, so a session expires in the browser as the token does. The refresh token
    goes only to the sign-out handler (its own cookie path), which revokes it."""
    _set(response, request, SESSION_COOKIE, access_token, expires_in, UI)
    _set(response, request, REFRESH_COOKIE, refresh_token, expires_in, LOGOUT_PATH)
    # A fresh CSRF token with every sign-in (no fixation across sessions).
    _set(response, request, CSRF_COOKIE, secrets.token_urlsafe(32), expires_in, UI)


def end_session(response: Response, request: Request) -> None:
    for name, path in ((SESSION_COOKIE, UI), (REFRESH_COOKIE, LOGOUT_PATH), (CSRF_COOKIE, UI)):
        response.delete_cookie(
            name, path=path, httponly=True, samesite="strict", secure=_secure(request)
        )


def csrf_token(request: Request) -> str:
    """The token forms carry: the cookie's, or a new one that ``remember_csrf`` sets."""
    existing = request.cookies.get(CSRF_COOKIE)
    if existing:
        return existing
    token = getattr(request.state, "new_csrf", None)
    if token is None:
        token = secrets.token_urlsafe(32)
        request.state.new_csrf = token
    return str(token)


def remember_csrf(response: Response, request: Request) -> None:
    """Sets the CSRF cookie a page's forms were rendered with, if it is new."""
    token = getattr(request.state, "new_csrf", None)
    if token is not None:
        # Lives as long as the browser; sign-in replaces it.
        _set(response, request, CSRF_COOKIE, token, 12 * 3600, UI)


def _same_origin(request: Request) -> bool:
    """The Origin header (or, where a browser sends none, the Referer) names this host.
    A form posted from another site fails here even before the token is compared."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return False
    parts = urlsplit(source)
    host = request.headers.get("host", "")
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


def check_csrf(request: Request, submitted: str | None, session_needed: bool = True) -> None:
    """A write may go on: the session is there and the form is the console's own.
    A write whose session has ended (the browser dropped the cookie with the token's expiry,
    and the CSRF cookie with it) goes to sign-in, not to a "form expired" error: nothing is
    done, and the page the form was on is the return address (``login_url``). Only sign-in
    itself is a write without a session."""
    if session_needed and not session_token(request):
        raise SignInRequired
    cookie = request.cookies.get(CSRF_COOKIE)
    if not _same_origin(request):
        raise ApiFailed(403, "This form was not sent from the console's own page")
    if not cookie or not submitted or not secrets.compare_digest(cookie, submitted):
        raise ApiFailed(403, "The form has expired; reload the page and try again")


def safe_next(target: str | None) -> str:
    """Only a console path may be a return address (no open redirect)."""
    if not target:
        return UI
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(UI) or "\\" in target:
        return UI
    if parts.path.startswith(LOGIN_PATH):
        return UI
    return target


def _page_of_form(request: Request) -> str | None:
    """The console page a form was posted from: its Referer when it names this host (the
    console sends ``Referrer-Policy: same-origin``). A write's own path is often no page
    (``.../cancel`` has no GET), so it is never the return address."""
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc.lower() != request.headers.get("host", "").lower() or not referer.path:
        return None
    return referer.path + (f"?{referer.query}" if referer.query else "")


def login_url(request: Request) -> str:
    """Sign-in, returning to this page, or for a write to the page its form was on."""
    if request.method in ("GET", "HEAD"):
        here: str | None = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    else:
        here = _page_of_form(request)
    return f"{LOGIN_PATH}?next={quote(safe_next(here), safe='')}"
