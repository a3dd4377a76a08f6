"""AWS credentials reach the children of a task type that names them in ``env_passthrough`` and
no other: a ``python`` task forked from the same fork server finds them neither in its
environment nor anywhere in its memory. A real fork server and real children."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.training import sagemaker_env_probe

from armillary.workflows.execution import sandbox
from armillary.workflows.execution.local import DEFAULT_PRELOAD, LocalExecutor
from armillary.workflows.execution.protocol import AttemptSpec, Outcome, ResourceLimits

PREFIX = "AKIDPASSTHROUGH"
SECRET = PREFIX + secrets.token_hex(20)

# Looks for the secret in every readable, writable or anonymous mapping of its own process
# (heap, stack, the fork server's inherited memory), without holding the secret itself: it
# knows a prefix and the SHA-256 of the whole value.
SCAN = """
import ctypes, hashlib, os

def main(prefix, digest, length):
    try:
        with open("/proc/self/environ", "rb") as f:
            initial = f.read()
    except PermissionError:  # not dumpable after the uid drop; the scan reads the block
        initial = b""
    hits, scanned = 0, 0
    with open("/proc/self/maps") as maps:
        regions = maps.read().splitlines()
    needle = prefix.encode()
    for line in regions:
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split("-"))
        path = fields[5] if len(fields) > 5 else ""
        if "r" not in fields[1] or path in ("[vvar]", "[vsyscall]", "[vvar_vclock]"):
            continue
        if path and not path.startswith("[") and "w" not in fields[1]:
            continue  # read-only file mappings: library code and constants
        data = ctypes.string_at(start, end - start)
        scanned += len(data)
        at = data.find(needle)
        while at != -1:
            if hashlib.sha256(data[at : at + length]).hexdigest() == digest:
                hits += 1
            at = data.find(needle, at + 1)
    return {
        "names": sorted(name for name in os.environ if "AWS" in name or "PASSTHROUGH" in name),
        "initial_environ_has_it": needle in initial,
        "hits": hits,
        "scanned": scanned,
    }
"""


@pytest.fixture
def base_dir() -> Iterator[Path]:
    """Not pytest's tmp_path: that sits in a 0700 directory the sandbox user cannot enter."""
    path = Path(tempfile.mkdtemp(prefix="armillary-passthrough-", dir="/tmp"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def worker_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The worker holds credentials; the probe type (like `train`) may pass them on.
    sagemaker_env_probe.register()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_PROFILE", "not-passed")  # no type names it
    yield
    sagemaker_env_probe.unregister()


def _spec(task_type: str, params: dict[str, Any], declared: list[str]) -> AttemptSpec:
    return AttemptSpec(
        attempt_id=str(uuid.uuid4()),
        job_id="job-1",
        project_id="project-1",
        task="step",
        task_type=task_type,
        params=params,
        inputs={},
        declared_outputs=declared,
        limits=ResourceLimits(),
        api_url="http://127.0.0.1:9/api",
        job_token="job-token-" + uuid.uuid4().hex,
    )


async def test_only_the_type_that_names_them_gets_the_credentials(
    base_dir: Path, worker_env: None
) -> None:
    executor = LocalExecutor(
        base_dir / "work", preload=(*DEFAULT_PRELOAD, sagemaker_env_probe.__name__)
    )
    args = {
        "prefix": PREFIX,
        "digest": hashlib.sha256(SECRET.encode()).hexdigest(),
        "length": len(SECRET),
    }
    try:
        # The python task runs after the probe too: nothing the probe's attempt did may leak.
        python = await executor.run(
            _spec("python", {"source": SCAN, "args": args}, ["names", "hits"])
        )
        probe = await executor.run(_spec(sagemaker_env_probe.NAME, {}, ["env"]))
        after = await executor.run(
            _spec("python", {"source": SCAN, "args": args}, ["names", "hits"])
        )
    finally:
        await executor.close()

    assert probe.outcome == Outcome.SUCCEEDED, probe.error
    assert probe.outputs == {
        "env": {
            "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_REGION": "eu-west-1",
        }
    }
    for result in (python, after):
        assert result.outcome == Outcome.SUCCEEDED, result.error
        outputs = result.outputs
        assert outputs is not None
        assert outputs["names"] == []
        assert outputs["initial_environ_has_it"] is False
        assert outputs["scanned"] > 10 * 1024 * 1024  # the scan did read the process
        assert outputs["hits"] == 0


def test_the_fork_server_holds_only_named_passthrough_variables(worker_env: None) -> None:
    env = sandbox.server_env(os.environ)
    assert env["AWS_SECRET_ACCESS_KEY"] == SECRET
    assert "AWS_PROFILE" not in env
    listed = env[sandbox.PASSTHROUGH_LIST].split(",")
    assert {"AWS_ACCESS_KEY_ID", "AWS_REGION", "AWS_SECRET_ACCESS_KEY"} <= set(listed)
    assert "AWS_PROFILE" not in listed
