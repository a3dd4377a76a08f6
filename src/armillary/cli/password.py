"""Reading a password: prompted for on a terminal, read from standard input otherwise.

``getpass`` on a pipe warns (``GetPassWarning``) and may read from the terminal instead; a
script that pipes a password (``echo "$PW" | armillary login ... --password-stdin``) gets the
first line of standard input, with no prompt and no warning.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

PasswordStdinOption = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from the first line of standard input, e.g. "
        '`printf %s "$PASSWORD" | armillary login ... --password-stdin` (also the default '
        "when standard input is not a terminal)",
    ),
]


def read_password(
    given: str | None, from_stdin: bool, prompt: str, *, confirm: bool = False
) -> str:
    """The password given on the command line, else the first line of standard input (with
    ``--password-stdin`` or when stdin is not a terminal), else one typed at a hidden prompt
    (twice with ``confirm``)."""
    from armillary.cli.session import fail  # session imports this module

    if given is not None and from_stdin:
        fail("--password and --password-stdin exclude each other")
    if given is not None:
        return given
    if from_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            fail("No password on standard input")
        return password
    typed: str = typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    return typed
