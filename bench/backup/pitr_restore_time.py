"""Recovery time of a pgBackRest point-in-time restore for a given database size: the RTO of
the PostgreSQL part of `docs/operations.md`'s point-in-time path.

    .venv/bin/python bench/backup/pitr_restore_time.py --scale 32 --seconds 30

A private cluster on a free loopback port (``tests/faults/private_services.py``), archiving
its WAL through pgBackRest to an encrypted, zstd-compressed repository in a local directory
(the configuration ``armillary.kit.pitr`` renders). ``pgbench -i --scale`` fills it (scale 1
is about 15 MiB), a full backup is taken, then ``pgbench`` writes for ``--seconds`` (the WAL a
restore has to replay). Then the data directory is deleted and timed: ``pgbackrest restore
--type=time`` into the empty directory, and the server's start until recovery ends and it is
promoted. Results are printed as a Markdown table; docs/operations.md quotes them. An S3
repository adds its transfer time (the restore reads the backup and the WAL once).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.faults.private_services import PrivatePostgres, _as_postgres, private_postgres

from armillary.kit.pitr import Repository, archive_conf, pgbackrest_config, pgbackrest_target

STANZA = "bench"


def run(argv: list[str], env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        _as_postgres(argv), capture_output=True, text=True, check=False, env=env, timeout=3600
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])} failed: {done.stdout}{done.stderr}")
    return done.stdout


def step(what: str) -> None:
    print(f"... {what}", file=sys.stderr, flush=True)


def psql(server: PrivatePostgres, query: str) -> str:
    argv = ["psql", "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", "-AtX"]
    return run([*argv, "-d", "postgres", "-c", query]).strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=32, help="pgbench scale (1 ≈ 15 MiB)")
    parser.add_argument("--seconds", type=int, default=30, help="pgbench writes after backup")
    parser.add_argument("--process-max", type=int, default=2, help="pgBackRest processes")
    args = parser.parse_args()

    server = private_postgres()
    work = Path(tempfile.mkdtemp(prefix="armillary-pitr-bench-"))
    env = {**os.environ, "PGBACKREST_REPO1_CIPHER_PASS": "bench-" + "c" * 40}
    try:
        for directory in (work, work / "log", work / "lock", work / "spool", work / "repo"):
            directory.mkdir(exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(directory, "postgres", "postgres")
        config = work / "pgbackrest.conf"
        config.write_text(
            pgbackrest_config(
                stanza=STANZA,
                pg_data=server.data,
                pg_port=server.port,
                pg_socket_dir=server.root,
                repo=Repository(path=str(work / "repo")),
                cipher_pass=None,
                work_dir=work,
            )
        )
        with (server.data / "postgresql.conf").open("a") as conf:
            conf.write(archive_conf(config, STANZA))
        # The server's archive_command reads the cipher pass from its environment.
        os.environ["PGBACKREST_REPO1_CIPHER_PASS"] = env["PGBACKREST_REPO1_CIPHER_PASS"]
        server.stop()
        server.start()
        pgbackrest = ["pgbackrest", f"--config={config}", f"--stanza={STANZA}"]
        pgbench = ["pgbench", "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres"]
        step("pgbench -i")
        run([*pgbench, "-i", "-q", "--scale", str(args.scale), "postgres"])
        size = int(psql(server, "SELECT pg_database_size('postgres')"))
        run([*pgbackrest, "stanza-create"], env)
        started = time.monotonic()
        run([*pgbackrest, f"--process-max={args.process_max}", "backup", "--type=full"], env)
        backup_seconds = time.monotonic() - started

        step("changes after the backup")
        lsn = psql(server, "SELECT pg_current_wal_lsn()")
        run([*pgbench, "-T", str(args.seconds), "-c", "2", "-j", "2", "postgres"])
        wal = int(psql(server, f"SELECT pg_current_wal_lsn() - '{lsn}'"))
        moment = psql(
            server, "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')"
        )
        # Recovery knows it reached the target only from a commit after it.
        time.sleep(0.1)
        psql(server, "CREATE TABLE after_the_target (id int)")
        run([*pgbackrest, "check"], env)
        server.stop()
        shutil.rmtree(server.data)

        step("restore")
        target = pgbackrest_target(datetime.fromisoformat(moment).replace(tzinfo=UTC))
        started = time.monotonic()
        run(
            [
                *pgbackrest,
                f"--process-max={args.process_max}",
                "restore",
                "--type=time",
                f"--target={target}",
                "--target-action=promote",
            ],
            env,
        )
        restore_seconds = time.monotonic() - started
        step("start and replay")
        started = time.monotonic()
        server.start()
        while psql(server, "SELECT pg_is_in_recovery()") != "f":
            time.sleep(0.1)
        if psql(server, "SELECT to_regclass('after_the_target') IS NULL") != "t":
            raise SystemExit("the restore went past the target")
        replay_seconds = time.monotonic() - started
        repo_bytes = sum(p.stat().st_size for p in (work / "repo").rglob("*") if p.is_file())
    except SystemExit:
        log = server.root / "server.log"
        print(log.read_text()[-3000:] if log.exists() else "", file=sys.stderr)
        raise
    finally:
        server.remove()
        shutil.rmtree(work, ignore_errors=True)

    mib = 1024 * 1024
    print(f"database {size / mib:.0f} MiB (pgbench scale {args.scale}), ", end="")
    print(f"{wal / mib:.0f} MiB of WAL after the backup, repository {repo_bytes / mib:.0f} MiB")
    print("| step | seconds |\n|---|---|")
    print(f"| `pgbackrest backup --type=full` | {backup_seconds:.1f} |")
    print(f"| `pgbackrest restore --type=time` into an empty directory | {restore_seconds:.1f} |")
    print(f"| start, WAL replay to the target and promotion | {replay_seconds:.1f} |")
    print(f"| RTO of the database (restore + replay) | {restore_seconds + replay_seconds:.1f} |")


if __name__ == "__main__":
    main()
