"""Benchmark: a 1 GiB dataset through the API to S3 (moto) against boto3 straight to the same
bucket, in one run.

    .venv/bin/python bench/datasets/transfer.py        (part of make bench-datasets)

Started here, on free loopback ports, and stopped by pid at the end:
  moto       ``python -m moto.server`` (S3), its spill files under the run's temp dir
  armillary  the embedded platform (``armillary.app:create_app``), one uvicorn worker,
             SQLite under a temporary ARMILLARY_HOME, S3 backend on the moto bucket,
             ARMILLARY_DATA_MAX_UPLOAD_BYTES=2 GiB, ARMILLARY_DATA_PROFILE_INLINE_MAX_BYTES=1
             (every upload is profiled by a background task after it is answered, so the
             full profile is not in the transfer; the format check still is).

One 1 GiB CSV is generated; before each repetition the 8 hex digits of its first column's name
are rewritten in place, so every upload is new bytes (no deduplication) of the same size.
Per repetition, in this order: boto3 ``upload_file``, API upload (multipart field ``file``,
streamed from disk by httpx), boto3 ``download_file``, API download streamed
(``?redirect=false``), API download through the presigned redirect. After the API upload the
script waits, untimed, for the background profile to finish so it does not share the CPU with
the next measurement. Every download is checked against the source's SHA-256 (untimed).

Reported per operation: wall seconds, MB/s (10^6 bytes), CPU seconds of this client process
(``time.process_time``: every thread), of the uvicorn process (own, and its profiler
children) and of moto. Ratios use the best run of each operation (the machine is shared, so
the least-disturbed run is the estimate); medians are shown beside them.
Results: bench/results/datasets_transfer.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from common import (
    GIB,
    MB,
    MIB,
    PYTHON,
    RESULTS,
    Service,
    clean_env,
    free_port,
    machine_info,
    versions,
)

REGION = "us-east-1"
ACCESS_KEY = "bench-access-key"
SECRET_KEY = "bench-secret-key"
BUCKET = "armillary-bench"
ADMIN_EMAIL = "bench-admin@armillary.dev"
USER_EMAIL = "bench-ds@armillary.dev"
PROJECT = "bench-transfer"
DATASET = "big"
TARGET_RATIO = 0.8  # issue 18 (was 0.7, issue 3)
UVICORN_FLAGS = [
    "--host", "127.0.0.1",
    "--loop", "uvloop",
    "--http", "httptools",
    "--no-access-log",
    "--log-level", "warning",
    "--no-server-header",
]  # fmt: skip
BOTO3_UPLOAD = "boto3 upload_file"
API_UPLOAD = "API upload"
OBSTORE_UPLOAD = "obstore put_file direct (Armillary's S3 store, in the client)"
DIRECT_DOWNLOAD = "boto3 download_file (one GET)"
API_STREAM = "API download (stream)"
API_PRESIGNED = "API download (presigned redirect)"
RANGED_DOWNLOAD = "boto3 download_file (default: 8 MiB ranges)"
TAG_OFFSET = len(b"row_")
TAG_LEN = 8


# --- data ----------------------------------------------------------------------------------


def generate_csv(path: Path, size: int, tag: str) -> None:
    """A valid CSV of exactly ``size`` bytes; header ``row_<tag>,a,b,c,cat,note``."""
    import polars as pl

    def frame(rows: int) -> pl.LazyFrame:
        row = pl.col("row")
        cats = {
            i: name
            for i, name in enumerate(
                ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"]
            )
        }
        return (
            pl.LazyFrame()
            .select(pl.int_range(0, rows, dtype=pl.Int64).alias("row"))
            .with_columns(
                a=(row.hash(1) % 1_000_000).cast(pl.Int64),
                b=(row.hash(2) % 1_000_000_000).cast(pl.Float64) / 1000,
                c=((row.hash(3) % 2_000_000).cast(pl.Int64) - 1_000_000).cast(pl.Float64) / 64,
                cat=(row.hash(4) % 8).cast(pl.Int64).replace_strict(cats, return_dtype=pl.String),
                note=pl.format("n{}", row.hash(5) % 100_000),
            )
            .rename({"row": f"row_{tag}"})
        )

    sample = frame(200_000).collect().write_csv()
    rows = int(size / (len(sample) / 200_000) * 1.01) + 1000
    frame(rows).sink_csv(path)
    with path.open("r+b") as handle:
        written = os.fstat(handle.fileno()).st_size
        if written <= size:
            raise SystemExit(f"generated {written} bytes, wanted more than {size}")
        # Cut at the last full line within the target, then fill the gap with one padded row.
        filler = b"0,0,0.0,0.0,pad,"
        cut = size
        while True:
            handle.seek(max(0, cut - 4096))
            tail = handle.read(cut - max(0, cut - 4096))
            cut = max(0, cut - 4096) + tail.rindex(b"\n") + 1
            if size - cut >= len(filler) + 2:
                break
            cut -= 1  # step back over that newline to the previous line
        handle.seek(cut)
        handle.write(filler + b"x" * (size - cut - len(filler) - 1) + b"\n")
        handle.truncate(size)
    if path.stat().st_size != size:
        raise SystemExit("generated file has the wrong size")


def retag(path: Path, tag: str) -> None:
    """New bytes, same size: rewrite the tag in the header in place."""
    assert len(tag) == TAG_LEN
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, tag.encode(), TAG_OFFSET)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


# --- spool watcher -------------------------------------------------------------------------


class SpoolWatcher:
    """Notes when the server's spool file reaches the full size: the body has been received.

    Splits the API upload into receive (client -> server spool) and store (format check and
    the rest of the multipart put to S3, which starts while the body arrives)."""

    def __init__(self, spool_dir: Path, size: int, server: Service) -> None:
        self.spool_dir = spool_dir
        self.size = size
        self.server = server
        self.done_at: float | None = None
        self.server_cpu_at_done: tuple[float, float] | None = None
        # Files already there (a previous upload's spool awaiting deletion) are not this one.
        self._before = {e.name for e in os.scandir(spool_dir)}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SpoolWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set() and self.done_at is None:
            try:
                for entry in os.scandir(self.spool_dir):
                    if (
                        entry.name.startswith("armillary-upload-")
                        and entry.name not in self._before
                        and entry.stat().st_size >= self.size
                    ):
                        self.done_at = time.perf_counter()
                        self.server_cpu_at_done = self.server.cpu()
                        return
            except FileNotFoundError:
                pass
            time.sleep(0.01)


# --- measurements --------------------------------------------------------------------------


@dataclass
class Measure:
    op: str
    rep: int
    seconds: float
    mb_per_s: float
    client_cpu: float
    server_cpu: float  # uvicorn's own
    server_children_cpu: float  # profiler subprocesses the server waited for
    moto_cpu: float
    extra: dict[str, Any] = field(default_factory=dict)


class Meter:
    def __init__(self, server: Service, moto: Service) -> None:
        self.server = server
        self.moto = moto

    def __enter__(self) -> Meter:
        self.server0 = self.server.cpu()
        self.moto0 = self.moto.cpu()[0]
        self.cpu0 = time.process_time()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.client_cpu = time.process_time() - self.cpu0
        server1 = self.server.cpu()
        self.server_cpu = server1[0] - self.server0[0]
        self.server_children_cpu = server1[1] - self.server0[1]
        self.moto_cpu = self.moto.cpu()[0] - self.moto0

    def result(self, op: str, rep: int, size: int, **extra: Any) -> Measure:
        return Measure(
            op=op,
            rep=rep,
            seconds=self.seconds,
            mb_per_s=size / MB / self.seconds,
            client_cpu=self.client_cpu,
            server_cpu=self.server_cpu,
            server_children_cpu=self.server_children_cpu,
            moto_cpu=self.moto_cpu,
            extra=extra,
        )


def _check(response: httpx.Response, expected: int, what: str) -> Any:
    if response.status_code != expected:
        raise SystemExit(
            f"{what}: expected {expected}, got {response.status_code}: {response.text[:2000]}"
        )
    return response.json() if response.content else None


def seed(client: httpx.Client, admin_password: str) -> dict[str, str]:
    """Admin creates a data scientist, who creates the project and the dataset."""
    admin = _check(
        client.post(
            "/api/v1/auth/token", data={"username": ADMIN_EMAIL, "password": admin_password}
        ),
        200,
        "admin login",
    )
    password = secrets.token_urlsafe(18)
    user = {"email": USER_EMAIL, "name": "Bench", "role": "data_scientist", "password": password}
    _check(
        client.post(
            "/api/v1/users", json=user, headers={"Authorization": f"Bearer {admin['access_token']}"}
        ),
        201,
        "create user",
    )
    tokens = _check(
        client.post("/api/v1/auth/token", data={"username": USER_EMAIL, "password": password}),
        200,
        "login",
    )
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    _check(
        client.post(
            "/api/v1/projects", json={"slug": PROJECT, "name": "Transfer bench"}, headers=headers
        ),
        201,
        "create project",
    )
    _check(
        client.post(
            f"/api/v1/projects/{PROJECT}/datasets", json={"name": DATASET}, headers=headers
        ),
        201,
        "create dataset",
    )
    return headers


def stream_to_file(
    client: httpx.Client, url: str, out: Path, headers: dict[str, str] | None = None
) -> int:
    written = 0
    with client.stream("GET", url, headers=headers) as response, out.open("wb") as handle:
        if response.status_code != 200:
            response.read()
            raise SystemExit(f"GET {url}: {response.status_code}: {response.text[:500]}")
        for chunk in response.iter_raw():
            handle.write(chunk)
            written += len(chunk)
    return written


def wait_for_profile(
    client: httpx.Client, url: str, headers: dict[str, str], limit: float
) -> tuple[str, float]:
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        body = _check(client.get(url, headers=headers), 200, "get version")
        if body["profile_status"] != "pending":
            return body["profile_status"], time.perf_counter() - started
        time.sleep(0.25)
    raise SystemExit(f"background profile still pending after {limit:.0f} s")


@dataclass
class Steps:
    """The timed operations of one repetition; ``start`` makes the file's bytes new."""

    s3: Any
    client: httpx.Client
    headers: dict[str, str]
    meter: Meter
    server: Service
    obstore_peer: Any
    transfer_config: Any
    single_stream: Any
    source: Path
    out: Path
    spool_dir: Path
    size: int
    versions_url: str
    profile_wait: float
    results: list[Measure]
    rep: int = 0
    tag: str = ""
    digest: str = ""
    version_url: str = ""

    def start(self, rep: int) -> None:
        self.rep = rep
        self.tag = secrets.token_hex(TAG_LEN // 2)
        retag(self.source, self.tag)
        self.digest = sha256_file(self.source)
        self.version_url = ""

    @property
    def direct_key(self) -> str:
        return f"direct/{self.tag}.csv"

    def _record(self, op: str, size: int, **extra: Any) -> None:
        record(self.results, self.meter.result(op, self.rep, size, **extra))

    def boto3_upload(self) -> None:
        with self.meter:
            self.s3.upload_file(
                str(self.source), BUCKET, self.direct_key, Config=self.transfer_config
            )
        self._record(BOTO3_UPLOAD, self.size)
        if self.s3.head_object(Bucket=BUCKET, Key=self.direct_key)["ContentLength"] != self.size:
            raise SystemExit("direct upload has the wrong size")

    def obstore_upload(self) -> None:
        key = f"obstore/{self.tag}.csv"
        with self.meter:
            asyncio.run(self.obstore_peer.put_file(key, self.source, content_type="text/csv"))
        self._record(OBSTORE_UPLOAD, self.size)
        self.s3.delete_object(Bucket=BUCKET, Key=key)

    def api_upload(self) -> None:
        meter = self.meter
        with (
            SpoolWatcher(self.spool_dir, self.size, self.server) as watcher,
            meter,
            self.source.open("rb") as handle,
        ):
            response = self.client.post(
                self.versions_url,
                files={"file": ("big.csv", handle, "text/csv")},
                headers=self.headers,
            )
        version = _check(response, 201, "API upload")
        if version["size_bytes"] != self.size or version["sha256"] != self.digest:
            raise SystemExit(f"API upload stored the wrong bytes: {version}")
        extra: dict[str, Any] = {"version": version["number"]}
        if watcher.done_at is not None and watcher.server_cpu_at_done is not None:
            receive = watcher.done_at - meter.t0
            extra.update(
                receive_seconds=receive,
                store_seconds=meter.seconds - receive,
                server_cpu_receive=watcher.server_cpu_at_done[0] - meter.server0[0],
            )
        self.version_url = f"{self.versions_url}/{version['number']}"
        # Untimed: the background profile must not share the CPU with the next measurement.
        status, waited = wait_for_profile(
            self.client, self.version_url, self.headers, self.profile_wait
        )
        extra.update(profile_status=status, profile_wait_seconds=waited)
        self._record(API_UPLOAD, self.size, **extra)

    def boto3_download(self) -> None:
        with self.meter:
            self.s3.download_file(BUCKET, self.direct_key, str(self.out), Config=self.single_stream)
        self._record(DIRECT_DOWNLOAD, self.size)
        check_download(self.out, self.size, self.digest, "boto3 download")

    def boto3_ranged_download(self) -> None:
        with self.meter:
            self.s3.download_file(
                BUCKET, self.direct_key, str(self.out), Config=self.transfer_config
            )
        self._record(RANGED_DOWNLOAD, self.size)
        check_download(self.out, self.size, self.digest, "boto3 ranged download")

    def api_stream(self) -> None:
        url = f"{self.version_url}/content?redirect=false"
        with self.meter:
            got = stream_to_file(self.client, url, self.out, self.headers)
        self._record(API_STREAM, got)
        check_download(self.out, self.size, self.digest, "API stream download")

    def api_presigned(self) -> None:
        url = f"{self.version_url}/content"
        with self.meter:
            redirect = self.client.get(url, headers=self.headers, follow_redirects=False)
            if redirect.status_code != 307:
                raise SystemExit(f"expected a 307 redirect, got {redirect.status_code}")
            got = stream_to_file(self.client, redirect.headers["location"], self.out)
        self._record(API_PRESIGNED, got)
        check_download(self.out, self.size, self.digest, "presigned download")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    work = Path(tempfile.mkdtemp(prefix="armillary-bench-transfer-", dir=args.tmp_dir))
    spool_dir, moto_tmp, home = work / "spool", work / "moto-tmp", work / "home"
    for d in (spool_dir, moto_tmp, home):
        d.mkdir()
    source, out = work / "source.csv", work / "out.bin"
    logs = RESULTS / "logs"
    results: list[Measure] = []
    info: dict[str, Any] = {}
    try:
        size = args.size_mib * MIB
        print(f"generating a {args.size_mib} MiB CSV in {work}", flush=True)
        t = time.perf_counter()
        generate_csv(source, size, secrets.token_hex(4))
        info["generate_seconds"] = time.perf_counter() - t

        moto_port = free_port()
        endpoint = f"http://127.0.0.1:{moto_port}"
        moto_env = clean_env(
            TMPDIR=str(moto_tmp), AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY
        )
        moto = Service(
            "moto",
            [PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
            moto_env,
            logs / "datasets_moto.log",
            lambda: httpx.get(f"{endpoint}/moto-api/", timeout=1).status_code < 500,
        )
        s3 = boto3.client(
            "s3",
            region_name=REGION,
            endpoint_url=endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )
        transfer_config = TransferConfig()  # boto3's defaults, as a user would get them
        # One GET streamed to disk: moto copies the whole object for every GET, ranged or
        # not, so boto3's default ranged download costs it O(size) per 8 MiB range.
        single_stream = TransferConfig(multipart_threshold=size + 1)
        info["boto3_transfer"] = {
            "multipart_threshold": transfer_config.multipart_threshold,
            "multipart_chunksize": transfer_config.multipart_chunksize,
            "max_concurrency": transfer_config.max_concurrency,
        }
        admin_password = secrets.token_urlsafe(18)
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        app_env = clean_env(
            ARMILLARY_PROFILE="embedded",
            ARMILLARY_HOME=str(home),
            ARMILLARY_SECRET_KEY=secrets.token_urlsafe(48),
            ARMILLARY_ADMIN_EMAIL=ADMIN_EMAIL,
            ARMILLARY_ADMIN_PASSWORD=admin_password,
            ARMILLARY_LOG_LEVEL="WARNING",
            ARMILLARY_STORAGE_BACKEND="s3",
            ARMILLARY_STORAGE_S3_ENDPOINT_URL=endpoint,
            ARMILLARY_STORAGE_S3_BUCKET=BUCKET,
            ARMILLARY_STORAGE_S3_REGION=REGION,
            ARMILLARY_STORAGE_S3_ALLOW_HTTP="true",
            ARMILLARY_STORAGE_S3_ACCESS_KEY_ID=ACCESS_KEY,
            ARMILLARY_STORAGE_S3_SECRET_ACCESS_KEY=SECRET_KEY,
            ARMILLARY_DATA_MAX_UPLOAD_BYTES=str(2 * GIB),
            ARMILLARY_DATA_PROFILE_INLINE_MAX_BYTES="1",
            ARMILLARY_DATA_SPOOL_DIR=str(spool_dir),
            AWS_EC2_METADATA_DISABLED="true",
        )
        with moto:
            s3.create_bucket(Bucket=BUCKET)
            subprocess.run(
                [str(Path(PYTHON).parent / "armillary"), "db", "upgrade"],
                cwd=work, env=app_env, check=True, capture_output=True,
            )  # fmt: skip
            server = Service(
                "armillary",
                [
                    PYTHON,
                    "-m",
                    "uvicorn",
                    "armillary.app:create_app",
                    "--factory",
                    *UVICORN_FLAGS,
                    "--port",
                    str(port),
                ],
                app_env,
                logs / "datasets_armillary.log",
                lambda: httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200,
            )
            with (
                server,
                httpx.Client(base_url=base_url, timeout=httpx.Timeout(900, connect=10)) as client,
            ):
                headers = seed(client, admin_password)
                meter = Meter(server, moto)
                # The platform's own store, driven from the client: the put without the API.
                from armillary.kit.storage import S3ObjectStore, StorageSettings

                obstore_peer = S3ObjectStore(
                    StorageSettings(
                        backend="s3",
                        s3_bucket=BUCKET,
                        s3_endpoint_url=endpoint,
                        s3_region=REGION,
                        s3_allow_http=True,
                        s3_access_key_id=ACCESS_KEY,
                        s3_secret_access_key=SECRET_KEY,
                    )
                )
                bench = Steps(
                    s3=s3,
                    client=client,
                    headers=headers,
                    meter=meter,
                    server=server,
                    obstore_peer=obstore_peer,
                    transfer_config=transfer_config,
                    single_stream=single_stream,
                    source=source,
                    out=out,
                    spool_dir=spool_dir,
                    size=size,
                    versions_url=f"/api/v1/projects/{PROJECT}/datasets/{DATASET}/versions",
                    profile_wait=args.profile_wait,
                    results=results,
                )
                for rep in range(1, args.reps + 1):
                    bench.start(rep)
                    print(f"rep {rep}/{args.reps} (tag {bench.tag})", flush=True)
                    uploads = [bench.boto3_upload, bench.api_upload, bench.obstore_upload]
                    downloads = [bench.boto3_download, bench.api_stream, bench.api_presigned]
                    if rep % 2 == 0:  # alternate the order, so neither side always goes first
                        uploads.reverse()
                        downloads.reverse()
                    if rep <= args.ranged_reps:
                        downloads.append(bench.boto3_ranged_download)
                    for step in uploads + downloads:
                        step()
                    # Free moto's spill files before the next repetition.
                    for obj in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
                        s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info["size_bytes"] = args.size_mib * MIB
    return {"results": results, "info": info}


def record(results: list[Measure], m: Measure) -> None:
    results.append(m)
    print(
        f"  {m.op:<44} {m.seconds:7.2f} s {m.mb_per_s:8.1f} MB/s  client CPU {m.client_cpu:6.2f} s",
        flush=True,
    )


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def check_download(out: Path, size: int, digest: str, what: str) -> None:
    try:
        if out.stat().st_size != size or sha256_file(out) != digest:
            raise SystemExit(f"{what}: the bytes differ from the source")
    finally:
        out.unlink(missing_ok=True)


# --- report --------------------------------------------------------------------------------


OPS = [
    BOTO3_UPLOAD,
    API_UPLOAD,
    OBSTORE_UPLOAD,
    DIRECT_DOWNLOAD,
    RANGED_DOWNLOAD,
    API_STREAM,
    API_PRESIGNED,
]


def summarize(results: list[Measure]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for op in OPS:
        rows = [r for r in results if r.op == op]
        if not rows:
            continue
        summary = {
            "reps": len(rows),
            "median_mb_s": statistics.median(r.mb_per_s for r in rows),
            "best_mb_s": max(r.mb_per_s for r in rows),
            "median_seconds": statistics.median(r.seconds for r in rows),
            "client_cpu": statistics.median(r.client_cpu for r in rows),
            "server_cpu": statistics.median(r.server_cpu for r in rows),
            "server_children_cpu": statistics.median(r.server_children_cpu for r in rows),
            "moto_cpu": statistics.median(r.moto_cpu for r in rows),
        }
        for key in (
            "receive_seconds",
            "store_seconds",
            "server_cpu_receive",
            "profile_wait_seconds",
        ):
            values = [r.extra[key] for r in rows if key in r.extra]
            if values:
                summary[key] = statistics.median(values)
        out[op] = summary
    return out


def render(
    data: dict[str, Any], machine: dict[str, str], libs: dict[str, str], reps: int, elapsed: float
) -> str:
    s = data["summary"]
    size_mib = data["info"]["size_bytes"] / MIB
    lines = [
        f"Run {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, {elapsed:.0f} s in total; "
        f"{size_mib:.0f} MiB CSV, {reps} repetitions of each operation, median MB/s shown (best in brackets). "
        f"Machine: {machine['nproc']} cores, {machine['cpu']}, {machine['memory']}; Linux {machine['kernel']}; "
        f"Python {machine['python']}; " + ", ".join(f"{k} {v}" for k, v in libs.items()) + ". "
        "Client, uvicorn, moto and the profiler share the same cores.",
        f"Load average (1 min) {data['info'].get('loadavg_start', '?')} at start, "
        f"{data['info'].get('loadavg_end', '?')} at the end (other work on the machine).",
        "",
        "| operation | runs | MB/s median (best) | seconds | client CPU s | uvicorn CPU s (+ profiler children) | moto CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for op, v in s.items():
        lines.append(
            f"| {op} | {v['reps']:.0f} | {v['median_mb_s']:.1f} ({v['best_mb_s']:.1f}) | {v['median_seconds']:.2f} | "
            f"{v['client_cpu']:.2f} | {v['server_cpu']:.2f} (+{v['server_children_cpu']:.2f}) | {v['moto_cpu']:.2f} |"
        )
    ratios = {}
    pairs = [
        ("upload", "API upload", "boto3 upload_file"),
        ("download, streamed through the API", "API download (stream)", DIRECT_DOWNLOAD),
        (
            "download, presigned redirect",
            "API download (presigned redirect)",
            DIRECT_DOWNLOAD,
        ),
    ]
    lines += [
        "",
        f"Ratios API / boto3 direct, best run against best run (median against median in "
        f"brackets); target ≥ {TARGET_RATIO}x:",
        "",
    ]
    for label, api, direct in pairs:
        if api in s and direct in s:
            ratio = s[api]["best_mb_s"] / s[direct]["best_mb_s"]
            median = s[api]["median_mb_s"] / s[direct]["median_mb_s"]
            ratios[label] = ratio
            ratios[f"{label} (median)"] = median
            lines.append(
                f"- {label}: **{ratio:.2f}x** ({median:.2f}x) — "
                f"{'met' if ratio >= TARGET_RATIO else 'NOT met'}"
            )
    if API_UPLOAD in s and OBSTORE_UPLOAD in s and BOTO3_UPLOAD in s:
        api_vs_store = s[API_UPLOAD]["best_mb_s"] / s[OBSTORE_UPLOAD]["best_mb_s"]
        store_vs_boto3 = s[OBSTORE_UPLOAD]["best_mb_s"] / s[BOTO3_UPLOAD]["best_mb_s"]
        ratios["API upload / obstore direct"] = api_vs_store
        ratios["obstore direct / boto3 upload"] = store_vs_boto3
        lines.append(
            f"- (no target, best) API upload / obstore put_file direct: {api_vs_store:.2f}x; "
            f"obstore put_file direct / boto3 upload_file: {store_vs_boto3:.2f}x"
        )
    up = s.get("API upload", {})
    if "receive_seconds" in up:
        lines += [
            "",
            f"API upload split (median): body received and spooled in {up['receive_seconds']:.2f} s "
            f"(uvicorn CPU {up['server_cpu_receive']:.2f} s), then format check and the rest of the "
            f"multipart put to S3 in {up['store_seconds']:.2f} s. Background profile of the whole file afterwards: "
            f"{up.get('profile_wait_seconds', float('nan')):.1f} s (not in the transfer).",
        ]
    data["ratios"] = ratios
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument(
        "--tmp-dir", default=None, help="where the source file and spool go (default: system temp)"
    )
    parser.add_argument("--profile-wait", type=float, default=900.0)
    parser.add_argument(
        "--ranged-reps",
        type=int,
        default=1,
        help="repetitions of boto3's default ranged download (slow on moto; informational)",
    )
    args = parser.parse_args()
    if args.reps < 2:
        raise SystemExit("--reps must be at least 2")
    started = time.monotonic()
    RESULTS.mkdir(parents=True, exist_ok=True)
    load_start = loadavg()
    data = run(args)
    data["info"].update(loadavg_start=load_start, loadavg_end=loadavg())
    data["summary"] = summarize(data["results"])
    machine = machine_info()
    libs = versions("httpx", "boto3", "moto", "obstore", "uvicorn", "polars")
    elapsed = time.monotonic() - started
    report = render(data, machine, libs, args.reps, elapsed)
    (RESULTS / "datasets_transfer.md").write_text(report)
    payload = {
        "machine": machine,
        "versions": libs,
        "elapsed_s": elapsed,
        "info": data["info"],
        "summary": data["summary"],
        "ratios": data["ratios"],
        "results": [asdict(r) for r in data["results"]],
    }
    (RESULTS / "datasets_transfer.json").write_text(json.dumps(payload, indent=2))
    print()
    print(report)


if __name__ == "__main__":
    main()
