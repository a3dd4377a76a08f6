"""A 500 MB file uploads and downloads with bounded server memory.

The platform runs as `armillary up` in its own process (embedded shape: SQLite, profiling
backgrounded), on local storage and on S3 (a moto server), where the upload's multipart put
runs while the body still arrives (ADR 0019) and the download streams through the server.
A thread samples that process's anonymous resident memory (``RssAnon`` in
``/proc/<pid>/status``: heap and other private memory, not the file pages the spool, the store
or Polars map) every 50 ms while a client streams the file up as multipart and streams it back
down to disk. The peak may exceed the pre-upload baseline by < 100 MB.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from tests.moto_server import ACCESS_KEY, REGION, SECRET_KEY, free_port

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform != "linux", reason="/proc")]

CLI = [sys.executable, "-c", "from armillary.cli.main import app; app()"]
MB = 1000 * 1000
FILE_BYTES = 500 * MB
MAX_GROWTH = 100 * MB
ADMIN_EMAIL = "root@example.com"
ADMIN_PASSWORD = "memory-test-admin-password"
STARTUP_TIMEOUT = 90.0


def _write_csv(path: Path, size: int) -> str:
    """A numeric CSV of at least ``size`` bytes, written block by block (never whole in
    memory); returns its SHA-256."""
    header = b"id,a,b,c,d,x,y\n"
    rows = 20_000
    block = "".join(
        f"{i},{i % 997},{(i * 7919) % 100003},{i % 13 - 6},{i // 3},"
        f"{(i % 1000) / 8:.3f},{((i * 31) % 4096) / 64:.4f}\n"
        for i in range(rows)
    ).encode()
    digest = hashlib.sha256(header)
    with path.open("wb") as out:
        out.write(header)
        written = len(header)
        while written < size:
            out.write(block)
            digest.update(block)
            written += len(block)
    return digest.hexdigest()


def _rss_anon(pid: int) -> int:
    """Anonymous resident memory of a process, in bytes."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon in /proc status")


@dataclass
class Sampler:
    """Samples a process's RssAnon every 50 ms in a thread, keeping the peak."""

    pid: int
    interval: float = 0.05
    peak: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self.peak = _rss_anon(self.pid)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, _rss_anon(self.pid))
            except (FileNotFoundError, ProcessLookupError):
                return
            self.samples += 1
            self._stop.wait(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=5)
        self.peak = max(self.peak, _rss_anon(self.pid))


def _profiler_children(parent: int) -> list[int]:
    """Pids of the profiler processes ``parent`` started (their arguments may come on stdin,
    so they are found by parent, not by the file they read)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            status = (entry / "status").read_text()
        except OSError:
            continue
        ppid = next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:")
        )
        if "armillary.data.profiling.profiler" in cmdline and ppid == parent:
            found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    """Whether ``pid`` is still a live process (not gone, not a zombie)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


@pytest.fixture(params=["local", "s3"])
def storage_env(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "local":
        return {"ARMILLARY_STORAGE_BACKEND": "local"}
    import boto3

    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = f"armillary-memory-{os.urandom(6).hex()}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    ).create_bucket(Bucket=bucket)
    return {
        "ARMILLARY_STORAGE_BACKEND": "s3",
        "ARMILLARY_STORAGE_S3_ENDPOINT_URL": endpoint,
        "ARMILLARY_STORAGE_S3_BUCKET": bucket,
        "ARMILLARY_STORAGE_S3_REGION": REGION,
        "ARMILLARY_STORAGE_S3_ALLOW_HTTP": "true",
        "ARMILLARY_STORAGE_S3_ACCESS_KEY_ID": ACCESS_KEY,
        "ARMILLARY_STORAGE_S3_SECRET_ACCESS_KEY": SECRET_KEY,
    }


@pytest.fixture
def platform(
    tmp_path: Path, storage_env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    home, spool, port = tmp_path / "home", tmp_path / "spool", free_port()
    spool.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARMILLARY_")}
    env.update(
        ARMILLARY_HOME=str(home),
        ARMILLARY_PORT=str(port),
        ARMILLARY_ADMIN_EMAIL=ADMIN_EMAIL,
        ARMILLARY_ADMIN_PASSWORD=ADMIN_PASSWORD,
        ARMILLARY_ARGON2_TIME_COST="1",
        ARMILLARY_ARGON2_MEMORY_COST_KIB="8",
        # Profile in the background (in a child process either way).
        ARMILLARY_DATA_PROFILE_INLINE_MAX_BYTES=str(1024 * 1024),
        ARMILLARY_DATA_SPOOL_DIR=str(spool),
        ARMILLARY_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
        **storage_env,
    )
    log = (tmp_path / "platform.log").open("wb")
    process = subprocess.Popen(
        [*CLI, "up"], env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"the platform exited: {(tmp_path / 'platform.log').read_text()}")
            try:
                if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the platform did not start"
            time.sleep(0.2)
        yield process, base_url, spool
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        log.close()


def test_500_mb_upload_and_download_with_bounded_memory(
    platform: tuple[subprocess.Popen[bytes], str, Path], tmp_path: Path
) -> None:
    process, base_url, _spool = platform
    timings: dict[str, float] = {}
    started = time.monotonic()
    source = tmp_path / "big.csv"
    expected_sha = _write_csv(source, FILE_BYTES)
    size = source.stat().st_size
    timings["generate"] = time.monotonic() - started

    with httpx.Client(base_url=base_url, timeout=httpx.Timeout(300, connect=10)) as client:
        login = client.post(
            "/api/v1/auth/token", data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        assert login.status_code == 200, login.text
        h = {"Authorization": f"Bearer {login.json()['access_token']}"}
        assert client.post(
            "/api/v1/projects", json={"slug": "mem", "name": "Mem"}, headers=h
        ).is_success
        assert client.post(
            "/api/v1/projects/mem/datasets", json={"name": "big"}, headers=h
        ).is_success
        versions = "/api/v1/projects/mem/datasets/big/versions"

        baseline = _rss_anon(process.pid)
        with Sampler(process.pid) as upload_memory, source.open("rb") as handle:
            t = time.monotonic()
            # httpx streams a file object in the multipart body, chunk by chunk.
            response = client.post(
                versions, files={"file": ("big.csv", handle, "text/csv")}, headers=h
            )
            timings["upload"] = time.monotonic() - t
        assert response.status_code == 201, response.text
        version = response.json()
        assert version["size_bytes"] == size
        assert version["sha256"] == expected_sha
        assert version["profile_status"] == "pending"

        target = tmp_path / "downloaded.csv"
        digest = hashlib.sha256()
        with Sampler(process.pid) as download_memory:
            t = time.monotonic()
            with (
                # Streamed through the server on both backends (no presigned redirect).
                client.stream("GET", f"{versions}/1/content?redirect=false", headers=h) as stream,
                target.open("wb") as out,
            ):
                assert stream.status_code == 200, stream.read()
                for chunk in stream.iter_bytes(1024 * 1024):
                    digest.update(chunk)
                    out.write(chunk)
            timings["download"] = time.monotonic() - t
        assert target.stat().st_size == size
        assert digest.hexdigest() == expected_sha

    growth = max(upload_memory.peak, download_memory.peak) - baseline
    timings["total"] = time.monotonic() - started
    print(
        f"\nfile {size / MB:.0f} MB; baseline RssAnon {baseline / MB:.1f} MB; "
        f"peak growth upload {(upload_memory.peak - baseline) / MB:.1f} MB "
        f"({upload_memory.samples} samples), download "
        f"{(download_memory.peak - baseline) / MB:.1f} MB ({download_memory.samples} samples); "
        + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
    )
    assert upload_memory.samples > 10
    assert download_memory.samples > 5
    assert growth < MAX_GROWTH, f"RssAnon grew by {growth / MB:.1f} MB"

    # Stopping the platform mid-profile leaves no profiler process behind.
    profiling = _profiler_children(process.pid)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    deadline = time.monotonic() + 5
    while any(_running(pid) for pid in profiling) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in profiling if _running(pid)]
