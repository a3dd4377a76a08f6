"""Private PostgreSQL clusters for fault tests: started on a free loopback port in a temporary
directory, stopped and restarted by the test, never the machine's shared server."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.ports import free_port


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql")
    return Path(found[-1])


def _as_postgres(argv: list[str]) -> list[str]:
    # initdb and the server refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@dataclass
class PrivatePostgres:
    root: Path
    port: int
    max_connections: int = 200

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            _as_postgres([str(_pg_bin() / "pg_ctl"), "-D", str(self.data), *args]),
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            f"-c max_connections={self.max_connections}"
        )
        self._ctl("-o", options, "-l", str(self.root / "server.log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "-w", "stop")

    def create_database(self, name: str) -> None:
        subprocess.run(
            _as_postgres(
                [
                    str(_pg_bin() / "createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    "postgres",
                    name,
                ]
            ),
            check=True,
            capture_output=True,
            timeout=60,
        )

    def activity(self) -> str:
        """Who is connected and doing what, with the locks they hold: for a failing test's
        message (a stuck transaction shows here)."""
        query = (
            "SELECT a.pid, a.application_name, a.state, a.xact_start, left(a.query, 160), "
            "(SELECT string_agg(l.locktype || ':' || l.mode, ',') FROM pg_locks l "
            "WHERE l.pid = a.pid AND l.granted) FROM pg_stat_activity a "
            "WHERE a.datname IS NOT NULL AND a.pid <> pg_backend_pid()"
        )
        psql = [str(_pg_bin() / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U"]
        result = subprocess.run(
            _as_postgres([*psql, "postgres", "-d", "postgres", "-AtX", "-c", query]),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return result.stdout + result.stderr

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def private_postgres(max_connections: int = 200) -> PrivatePostgres:
    root = Path(tempfile.mkdtemp(prefix="armillary-fault-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    server = PrivatePostgres(root, free_port(), max_connections)
    subprocess.run(
        _as_postgres(
            [
                str(_pg_bin() / "initdb"),
                "-D",
                str(server.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    server.start()
    return server


@dataclass
class PrivateRedis:
    root: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=self.port)
        for _ in range(200):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                import time

                time.sleep(0.05)
        raise RuntimeError("the private redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def private_redis() -> PrivateRedis:
    server = PrivateRedis(Path(tempfile.mkdtemp(prefix="armillary-fault-redis-")), free_port())
    server.start()
    return server


@dataclass
class PrivatePgBouncer:
    """Debian's PgBouncer in transaction mode in front of a private cluster."""

    root: Path
    port: int
    process: subprocess.Popen[bytes]

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def remove(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


def private_pgbouncer(postgres_port: int, pool_size: int = 20) -> PrivatePgBouncer:
    import time

    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        raise RuntimeError("pgbouncer is not installed (scripts/ensure-services.sh installs it)")
    root = Path(tempfile.mkdtemp(prefix="armillary-fault-pgbouncer-"))
    port = free_port()
    (root / "users.txt").write_text('"postgres" ""\n')
    (root / "pgbouncer.ini").write_text(
        f"[databases]\n* = host=127.0.0.1 port={postgres_port}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {root}/users.txt\n"
        f"pool_mode = transaction\nmax_client_conn = 500\ndefault_pool_size = {pool_size}\n"
        "ignore_startup_parameters = extra_float_digits\n"
        f"logfile = {root}/pgbouncer.log\n"
    )
    argv = [binary, str(root / "pgbouncer.ini")]
    if os.geteuid() == 0:  # it refuses to run as root
        shutil.chown(root, "postgres", "postgres")
        for file in root.iterdir():
            shutil.chown(file, "postgres", "postgres")
        argv = ["runuser", "-u", "postgres", "--", *argv]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    bouncer = PrivatePgBouncer(root, port, process)
    deadline = time.monotonic() + 20
    ready = ["pg_isready", "-h", "127.0.0.1", "-p", str(port)]
    while subprocess.run(ready, capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            bouncer.remove()
            raise RuntimeError("pgbouncer did not start")
        time.sleep(0.1)
    return bouncer
