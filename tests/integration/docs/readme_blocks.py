"""The README's shell blocks as the test runs them: found by what they do, run with bash
against a test platform, and every curl call they make recorded (request, status, headers,
body) by a stand-in ``curl`` on PATH that calls the real one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import armillary

README = Path(__file__).resolve().parents[3] / "README.md"
#: Where the README's `make run` serves; the test platform listens elsewhere.
DOCUMENTED_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class Block:
    """A fenced ``bash`` block, with the heading of its section and the paragraph just above
    it (on one line, as the prose reads)."""

    section: str
    before: str
    code: str


def bash_blocks(text: str) -> list[Block]:
    """Every ```` ```bash ```` block of a Markdown text, in order."""
    blocks: list[Block] = []
    section = ""
    paragraph: list[str] = []
    last: list[str] = []
    code: list[str] = []
    fence: str | None = None  # the language of the open fence
    for line in text.splitlines():
        if fence is not None:
            if not line.startswith("```"):
                code.append(line)
                continue
            if fence == "bash":
                before = " ".join(" ".join(paragraph or last).split())  # as one line
                blocks.append(Block(section, before, "\n".join(code) + "\n"))
            # Prose above a block in another language is not the next block's either.
            fence, paragraph, last, code = None, [], [], []
        elif line.startswith("```"):
            fence = line[3:].strip()
        elif line.startswith("## "):
            section, paragraph, last = line[3:].strip(), [], []
        elif not line.strip():
            # Only the paragraph right above a block belongs to it.
            last, paragraph = (paragraph or last), []
        else:
            paragraph.append(line)
    return blocks


def block_with(marker: str, blocks: list[Block]) -> Block:
    """The one block whose code contains ``marker``."""
    found = [block for block in blocks if marker in block.code]
    assert len(found) == 1, f"{len(found)} README blocks contain {marker!r}"
    return found[0]


def commands(code: str) -> list[str]:
    """The block's commands, each on one line (backslash continuations joined)."""
    joined = code.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip()]


@dataclass(frozen=True)
class Call:
    """One curl call a block made."""

    args: list[str]
    status: int
    headers: dict[str, str]
    body: str

    @property
    def method(self) -> str:
        if "-X" in self.args:
            return self.args[self.args.index("-X") + 1]
        return "POST" if {"-d", "-F"} & set(self.args) else "GET"

    @property
    def url(self) -> str:
        return next(arg for arg in self.args if arg.startswith("http"))

    @property
    def sent(self) -> Any:
        """The JSON body sent with ``-d``."""
        return json.loads(self.args[self.args.index("-d") + 1])

    def json(self) -> Any:
        return json.loads(self.body)


_CURL = """#!/usr/bin/env bash
# Records each call in its own directory under $README_CALLS, then behaves as curl.
set -o pipefail
n=$(ls "$README_CALLS" | wc -l)
call=$(printf '%s/%03d' "$README_CALLS" "$n")
mkdir "$call"
printf '%s\\0' "$@" > "$call/args"
{real} -D "$call/headers" "$@" | tee "$call/body"
"""

_ARMILLARY = """#!/usr/bin/env bash
exec {python} -m armillary.cli "$@"
"""


class Shell:
    """Runs README blocks in ``workdir`` against the platform at ``url``: the README's
    ``.venv/bin/armillary`` is this interpreter's CLI, ``python3`` this interpreter, and
    ``curl`` the recording stand-in."""

    def __init__(self, workdir: Path, url: str) -> None:
        self.workdir = workdir
        self.url = url
        self.calls_dir = workdir.parent / "calls"
        self.calls_dir.mkdir()
        tools = workdir.parent / "tools"
        tools.mkdir()
        real = shutil.which("curl")
        assert real, "curl is needed to run the README's blocks"
        _script(tools / "curl", _CURL.format(real=real))
        (tools / "python3").symlink_to(sys.executable)
        venv = workdir / ".venv" / "bin"
        venv.mkdir(parents=True)
        _script(venv / "armillary", _ARMILLARY.format(python=sys.executable))
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("ARMILLARY_", "CURL_"))
        }
        # The CLI from the same source tree as the code this test imports (the working
        # directory changes, so a relative PYTHONPATH would not find it).
        source = str(Path(armillary.__file__).resolve().parents[1])
        python_path = [source, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        self.env.update(
            PYTHONPATH=os.pathsep.join(str(Path(p).resolve()) for p in python_path),
            PATH=f"{tools}{os.pathsep}{os.environ['PATH']}",
            README_CALLS=str(self.calls_dir),
            ARMILLARY_CONFIG_DIR=str(workdir.parent / "cli-config"),
            COLUMNS="200",
        )

    def run(self, script: str, stdin: str = "", **variables: str) -> tuple[str, list[Call]]:
        """Run ``script`` (the README's URL pointed at the test platform) with ``variables``
        set; returns its stdout and the curl calls it made. Fails on a command that fails."""
        before = len(list(self.calls_dir.iterdir()))
        done = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + script.replace(DOCUMENTED_URL, self.url)],
            cwd=self.workdir,
            env={**self.env, **variables},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"{script}\n--- stdout ---\n{done.stdout}\n{done.stderr}"
        calls = sorted(self.calls_dir.iterdir())[before:]
        return done.stdout, [_call(path) for path in calls]


def _script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def _call(path: Path) -> Call:
    args = (path / "args").read_text().split("\0")[:-1]
    lines = (path / "headers").read_text().splitlines()
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return Call(args, status, headers, (path / "body").read_text())
