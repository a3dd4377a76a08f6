"""Attacks of one tenant's task on the platform and on another tenant's task (F1, F2, F4, F5),
each as it was carried out against the fork server, now against real sandboxes."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from pathlib import Path

import pytest
from tests.security.sandbox.conftest import Log, python

from armillary.workflows.execution.local import LocalExecutor
from armillary.workflows.execution.protocol import Outcome, ResourceLimits

IS_ROOT = os.geteuid() == 0


def processes_with(marker: str) -> list[int]:
    """Host pids whose command line holds ``marker`` (zombies excepted)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() not in (entry / "cmdline").read_bytes():
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


DAEMON = """
import os, subprocess, sys, time
def main(context, marker):
    (context.artifacts_dir / "model.txt").write_text("weights")
    (context.artifacts_dir / "keep.txt").write_text("kept")
    # A daemon of its own session, detached twice, that outlives the task's return and
    # swaps the listed artifact for links to the platform's secrets, over and over.
    swapper = (
        "import os, sys, time\\n"
        "art = sys.argv[1]\\n"
        "for _ in range(600000):\\n"
        "    for target in ('/etc/shadow', '/proc/1/environ', '/root/.bash_history'):\\n"
        "        try:\\n"
        "            os.replace(art + '/model.txt', art + '/.old')\\n"
        "        except OSError:\\n"
        "            pass\\n"
        "        try:\\n"
        "            os.symlink(target, art + '/model.txt')\\n"
        "        except OSError:\\n"
        "            pass\\n"
        "        time.sleep(0.0005)\\n"
    )
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", swapper,
                                      str(context.artifacts_dir), marker])
        os._exit(0)
    time.sleep(0.2)  # the swapping has begun
    return {}
"""


async def test_a_daemon_dies_with_its_attempt_and_cannot_swap_artifacts(
    executor: LocalExecutor,
) -> None:
    marker = "daemon-" + uuid.uuid4().hex
    for _ in range(3):
        result = await executor.run(python(DAEMON, args={"marker": marker}))
        assert result.outcome == Outcome.SUCCEEDED, result.error
        # F5: nothing of the sandbox outlives the attempt, a setsid daemon included.
        assert processes_with(marker) == []
        # F1: whatever the daemon swapped in, only regular files the task wrote are taken.
        assert set(result.artifacts) <= {"model.txt", "keep.txt", ".old"}
        for name, path in result.artifacts.items():
            assert not path.is_symlink()
            assert path.read_bytes() in (b"weights", b"kept"), name
            assert not path.is_relative_to(result.workdir / "artifacts")  # a copy
        result.cleanup()


SLEEPER = """
import os, subprocess, sys, time
def main(marker):
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])
    time.sleep(0.2)
    print("UID", os.getuid(), flush=True)
    time.sleep(60)
"""

SNOOPER = """
import os, signal
def main(marker):
    seen, killed, read = [], [], []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        seen.append(int(name))
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    read.append(int(name))
        except OSError:
            pass
    # Every pid number not of its own sandbox (the victim's host pids among them).
    for pid in range(2, 32768):
        if pid in seen or os.path.exists(f"/proc/{pid}"):
            continue  # its own processes and threads
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except OSError:
            pass
    return {"uid": os.getuid(), "read": read, "seen": len(seen), "killed": killed}
"""


async def test_a_task_can_neither_see_nor_signal_another_tenants_task(
    executor: LocalExecutor,
) -> None:
    marker = "victim-" + uuid.uuid4().hex
    victim_log = Log()
    cancel = asyncio.Event()
    victim = asyncio.create_task(
        executor.run(
            python(SLEEPER, args={"marker": marker}, project="tenant-a"),
            on_log=victim_log,
            cancel=cancel,
        )
    )
    for _ in range(600):
        if "UID" in victim_log.text:
            break
        await asyncio.sleep(0.05)
    assert processes_with(marker), "the victim runs"
    attacker = await executor.run(python(SNOOPER, args={"marker": marker}, project="tenant-b"))
    assert attacker.outcome == Outcome.SUCCEEDED, attacker.error
    outputs = attacker.outputs
    assert outputs is not None
    assert outputs["read"] == []  # the victim is not even in view (own PID namespace)
    assert outputs["killed"] == []
    assert not victim.done()  # and still runs after every kill the attacker tried
    assert processes_with(marker)
    if IS_ROOT:  # F4: a uid of its own per attempt
        victim_uid = int(victim_log.text.split("UID", 1)[1].split()[0])
        assert outputs["uid"] != victim_uid
    cancel.set()
    result = await victim
    assert result.outcome == Outcome.CANCELLED
    for done in (attacker, result):
        done.cleanup()


SCAN = """
import ctypes, hashlib
def main(prefix, digest, length):
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
            continue
        data = ctypes.string_at(start, end - start)
        scanned += len(data)
        at = data.find(needle)
        while at != -1:
            if hashlib.sha256(data[at : at + length]).hexdigest() == digest:
                hits += 1
            at = data.find(needle, at + 1)
    return {"hits": hits, "scanned": scanned}
"""


async def test_no_other_tenants_token_in_memory_after_fifty_attempts(
    executor: LocalExecutor,
) -> None:
    # F2: the fork server kept every request (token included) in its heap, and each child
    # inherited it. Now tokens never enter a sandbox, and each sandbox serves one attempt.
    prefix = "tenant-a-token-"
    secret = prefix + uuid.uuid4().hex
    padding = "# " + "x" * 150_000 + "\n"  # large inline sources, as in the attack
    source = padding + "def main():\n    return {}\n"
    for batch in range(10):
        results = await asyncio.gather(
            *(executor.run(python(source, project="tenant-a", token=secret)) for _ in range(5))
        )
        for result in results:
            assert result.outcome == Outcome.SUCCEEDED, (batch, result.error)
            result.cleanup()
    args = {
        "prefix": prefix,
        "digest": hashlib.sha256(secret.encode()).hexdigest(),
        "length": len(secret),
    }
    scan = await executor.run(python(SCAN, args=args, project="tenant-b"))
    assert scan.outcome == Outcome.SUCCEEDED, scan.error
    assert scan.outputs is not None
    assert scan.outputs["scanned"] > 10 * 1024**2  # the scan did read the process
    assert scan.outputs["hits"] == 0
    scan.cleanup()


FORK_BOMB = """
import os, time
def main():
    children = 0
    try:
        while True:
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
            children += 1
    except OSError as exc:
        return {"children": children, "error": exc.errno}
"""


async def test_a_fork_bomb_stops_at_the_process_limit(executor: LocalExecutor) -> None:
    if executor._factory is None or executor._factory.cgroups is None:
        pytest.skip("no cgroup on this host: process counts are not limited")
    result = await executor.run(python(FORK_BOMB, limits=ResourceLimits(wall_seconds=60)))
    assert result.outcome == Outcome.SUCCEEDED, result.error
    assert result.outputs is not None
    assert 0 < result.outputs["children"] < executor.pids_max
    result.cleanup()


async def test_two_gib_of_shared_memory_is_stopped_at_the_limit(executor: LocalExecutor) -> None:
    if executor._factory is None or executor._factory.cgroups is None:
        pytest.skip("no cgroup on this host: only RLIMIT_DATA, which shared memory escapes")
    source = """
import mmap
def main():
    shared = mmap.mmap(-1, 2 * 1024**3)
    chunk = b"x" * 1024**2
    for _ in range(2048):
        shared.write(chunk)
    return {"survived": True}
"""
    limits = ResourceLimits(memory_bytes=256 * 1024**2)
    result = await executor.run(python(source, limits=limits))
    assert result.outcome == Outcome.MEMORY_EXCEEDED, (result.outcome, result.error)
    assert result.error is not None
    assert result.error.startswith("memory limit of 256 MiB exceeded")
    result.cleanup()


def test_groups_left_by_a_dead_worker_are_swept(executor: LocalExecutor) -> None:
    factory = executor._factory
    if factory is None or factory.cgroups is None:
        pytest.skip("no cgroup on this host")
    limiter = factory.cgroups
    stale = limiter.create("slot-stale-" + uuid.uuid4().hex)
    fresh = limiter.create("slot-fresh-" + uuid.uuid4().hex)
    try:
        for directory in {stale.memory, stale.pids}:
            os.utime(directory, (0, 0))  # as if made long ago
        limiter.sweep()
        assert not stale.memory.exists()
        assert not stale.pids.exists()
        assert fresh.memory.exists()
        assert fresh.pids.exists()
    finally:
        fresh.remove()
        stale.remove()
