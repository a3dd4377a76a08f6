"""Signing the CLI in to a server: the stored credentials, and a client that uses them.

``armillary login`` keeps the server URL and the token pair in
``$ARMILLARY_CONFIG_DIR/credentials.json`` (default ``~/.config/armillary``), readable by the
owner only. ``ARMILLARY_URL`` and ``ARMILLARY_TOKEN`` override what is stored, for scripts
and CI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, NoReturn
from urllib.parse import urlsplit

import typer
from rich.markup import escape

from armillary.cli.output import OutputFormat, OutputOption, print_data, terminal
from armillary.cli.password import PasswordStdinOption, read_password
from armillary.sdk import ArmillaryError, Client, Tokens, credentials
from armillary.sdk.credentials import (
    TOKEN_ENV,
    URL_ENV,
    Credentials,
    credentials_path,
    save_credentials,
)

console = terminal()
err = terminal(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str) -> NoReturn:
    """Print ``message`` as a one-line error on stderr and exit with status 1."""
    err.print(f"[red]Error:[/red] {escape(message)}")
    raise typer.Exit(1)


def normalize_url(url: str) -> str:
    """The server URL without a trailing slash; refuses anything but http(s)."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        fail(f"Not a server URL: {url!r} (expected http://host:port or https://host)")
    return url


def load_credentials() -> Credentials | None:
    """The stored credentials, or ``None`` if there are none."""
    try:
        return credentials.load_credentials()
    except credentials.UnreadableCredentials as exc:
        fail(str(exc))


def error_message(exc: ArmillaryError) -> str:
    """One line that says what went wrong, with a hint where there is an obvious next step."""
    if exc.status == 0:
        return f"{exc.title}: {exc.detail}" if exc.detail else exc.title
    text = f"{exc.title} ({exc.status})"
    if exc.detail:
        text += f": {exc.detail}"
    if exc.status == 401:
        text += " - run `armillary login` again"
    # Validation problems can span lines; an error stays on one.
    return " ".join(text.split())


def open_client() -> Client:
    """A client for the configured server, signed in with the stored or given token.

    ``ARMILLARY_URL`` picks the server and ``ARMILLARY_TOKEN`` the access token (never
    renewed). Stored tokens are sent only to the server that issued them; renewed tokens are
    written back, since each refresh token works only once.
    """
    stored = load_credentials()
    url = os.environ.get(URL_ENV) or (stored.url if stored else None)
    if not url:
        fail(
            f"Not signed in: run `armillary login --url URL --email EMAIL`, "
            f"or set {URL_ENV} and {TOKEN_ENV}"
        )
    url = normalize_url(url)
    token = os.environ.get(TOKEN_ENV)
    if token:
        return Client(url, token)
    if stored is None or normalize_url(stored.url) != url:
        fail(f"Not signed in to {url}: run `armillary login --url {url} --email EMAIL`")
    current = stored

    def keep(tokens: Tokens) -> None:
        nonlocal current
        current = current.with_tokens(tokens)
        save_credentials(current)

    return Client(
        url,
        stored.access_token,
        refresh_token=stored.refresh_token,
        expires_at=stored.expires_at,
        on_tokens=keep,
    )


@contextmanager
def api_client() -> Iterator[Client]:
    """:func:`open_client`, closed afterwards; an API error becomes a one-line message and
    exit status 1 instead of a traceback."""
    client = open_client()
    try:
        yield client
    except ArmillaryError as exc:
        fail(error_message(exc))
    except OSError as exc:
        fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
    finally:
        client.close()


def login(
    url: Annotated[
        str, typer.Option(envvar=URL_ENV, help="Server URL, e.g. https://armillary.example.com")
    ],
    email: Annotated[str, typer.Option(help="Sign-in email")],
    password: Annotated[
        str | None,
        typer.Option(help="Prompted for when omitted; prefer --password-stdin in scripts"),
    ] = None,
    password_stdin: PasswordStdinOption = False,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Sign in to a server and keep the tokens for the other commands (the tokens are never
    printed, in any output format).

    In scripts and CI, pipe the password in: printf %s "$PASSWORD" | armillary login --url
    URL --email EMAIL --password-stdin
    """
    url = normalize_url(url)
    password = read_password(password, password_stdin, "Password")
    with Client(url) as client:
        try:
            tokens = client.login(email, password)
        except ArmillaryError as exc:
            fail(error_message(exc))
    path = save_credentials(
        Credentials(
            url=url,
            email=email,
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            expires_at=tokens.expires_at,
        )
    )
    signed_in = {
        "url": url,
        "email": email,
        "credentials_file": str(path),
        "expires_at": _instant(tokens.expires_at),
    }
    if print_data(output, signed_in):
        return
    console.print(f"Signed in to {escape(url)} as {escape(email)}; credentials in {path}")


def _instant(epoch_seconds: float | None) -> str | None:
    if epoch_seconds is None:
        return None
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="seconds")


def logout(output: OutputOption = OutputFormat.TABLE) -> None:
    """Revoke the stored refresh token on the server and delete the credentials file."""
    stored = load_credentials()
    if stored is None:
        if not print_data(output, {"signed_out": False, "url": None, "revoked": False}):
            console.print("Not signed in.")
        return
    revoked = True
    with Client(stored.url, stored.access_token, refresh_token=stored.refresh_token) as client:
        try:
            client.logout()
        except ArmillaryError as exc:
            # The file goes either way: a token the server no longer takes is worthless.
            revoked = False
            err.print(f"[yellow]Warning:[/yellow] {escape(error_message(exc))}")
    credentials_path().unlink(missing_ok=True)
    if print_data(output, {"signed_out": True, "url": stored.url, "revoked": revoked}):
        return
    console.print(f"Signed out of {escape(stored.url)}.")
