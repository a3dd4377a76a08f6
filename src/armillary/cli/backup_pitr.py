"""``armillary backup`` for point-in-time recovery: ``restore-point`` (the objects as of the
moment pgBackRest restored the database to), ``objects-sync`` (the store's history into a
backup bucket) and ``pgbackrest-config``."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from armillary.cli.backup import _fail, _run, _settings, app, console, err, restore_point
from armillary.cli.output import OutputFormat, OutputOption, print_data

if TYPE_CHECKING:
    from armillary.kit.storage import StorageSettings

BackupBucketOption = Annotated[
    str | None,
    typer.Option(
        "--backup-bucket",
        envvar="ARMILLARY_STORAGE_BACKUP_BUCKET",
        help="The bucket `objects-sync` copies the store's history into",
    ),
]
BackupRegionOption = Annotated[
    str | None,
    typer.Option(
        "--backup-region",
        envvar="ARMILLARY_STORAGE_BACKUP_REGION",
        help="The backup bucket's region, when it is another than the store's",
    ),
]


@app.command("restore-point")
def restore_point_command(
    as_of: Annotated[
        datetime,
        typer.Option(
            "--as-of",
            formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z"],
            help="The moment pgBackRest restored the database to, with its zone",
        ),
    ],
    backup_bucket: BackupBucketOption = None,
    backup_region: BackupRegionOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Change the store's current objects")] = False,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """After `pgbackrest restore --type=time --target=...`: bring the S3 bucket's objects back
    to the same moment (from their versions, and from the backup bucket's copy of what the
    bucket lost), set the audit checkpoint from the restored chain and clear the cache."""
    from armillary.kit.object_history import backup_settings
    from armillary.kit.pitr import PointInTimeError

    if not yes:
        err.print("This changes the store's current objects: add --yes.")
        raise typer.Exit(2)
    settings, storage = _settings()
    backup = backup_settings(storage, backup_bucket, backup_region) if backup_bucket else None
    try:
        counts = _run(restore_point(settings, storage, as_of, backup))
    except PointInTimeError as exc:
        raise _fail(exc) from exc
    if print_data(output_format, counts):
        return
    console.print(
        f"Objects as of {counts['as_of']}: {counts['reverted']} brought back from their "
        f"versions, {counts['from_backup']} from the backup bucket, {counts['deleted']} newer "
        f"ones deleted, {counts['kept']} unchanged."
    )


def sync_objects(
    storage: StorageSettings, bucket: str, region: str | None, retention_days: int
) -> dict[str, Any]:
    """Copy the store's history into the backup bucket (made and hardened like the store's
    own on the first run), then prune what ``retention_days`` no longer needs."""
    from dataclasses import asdict
    from datetime import timedelta

    from armillary.kit.object_history import backup_settings, sync
    from armillary.kit.storage.admin import init_bucket

    backup = backup_settings(storage, bucket, region)
    init_bucket(backup)
    retention = timedelta(days=retention_days) if retention_days > 0 else None
    return {"backup_bucket": bucket, **asdict(sync(storage, backup, retention=retention))}


@app.command("objects-sync")
def objects_sync(
    backup_bucket: BackupBucketOption = None,
    backup_region: BackupRegionOption = None,
    retention_days: Annotated[
        int,
        typer.Option(
            "--retention-days",
            envvar="ARMILLARY_STORAGE_BACKUP_RETENTION_DAYS",
            help="A restore can reach back this far; 0 keeps everything",
        ),
    ] = 35,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Copy every version and deletion of the S3 store into a backup bucket (another region
    or account if you like), so objects come back even when the store's bucket is gone.
    Run it on a schedule; `restore-point --backup-bucket` reads from the copy."""
    if not backup_bucket:
        err.print("Name the backup bucket: --backup-bucket or ARMILLARY_STORAGE_BACKUP_BUCKET.")
        raise typer.Exit(2)
    from botocore.exceptions import BotoCoreError, ClientError

    _, storage = _settings()
    if storage.backend != "s3":
        err.print("objects-sync copies an S3 store; this one is local (back it up with `create`).")
        raise typer.Exit(2)
    try:
        report = sync_objects(storage, backup_bucket, backup_region, retention_days)
    except (BotoCoreError, ClientError) as exc:
        raise _fail(exc) from exc
    if print_data(output_format, report):
        return
    console.print(
        f"{backup_bucket}: {report['copied']} versions and {report['deletions']} deletions "
        f"copied, {report['already']} already there, {report['pruned']} past retention removed."
    )


@app.command("pgbackrest-config")
def pgbackrest_config_command(
    pg_data: Annotated[Path, typer.Option("--pg-data", help="The cluster's data directory")],
    repo_bucket: Annotated[
        str | None, typer.Option("--repo-bucket", help="S3 bucket of the repository")
    ] = None,
    repo_region: Annotated[str, typer.Option("--repo-region")] = "us-east-1",
    repo_endpoint: Annotated[
        str | None, typer.Option("--repo-endpoint", help="Host name of an S3-compatible store")
    ] = None,
    repo_path: Annotated[
        str, typer.Option("--repo-path", help="Path in the bucket, or a directory without one")
    ] = "/pgbackrest",
    repo_key_type: Annotated[
        str,
        typer.Option(
            "--repo-key-type",
            help="auto: the instance or pod role; shared: PGBACKREST_REPO1_S3_KEY/_SECRET",
        ),
    ] = "auto",
    repo_ca_file: Annotated[Path | None, typer.Option("--repo-ca-file")] = None,
    stanza: Annotated[str, typer.Option("--stanza")] = "armillary",
    pg_port: Annotated[int, typer.Option("--pg-port")] = 5432,
    pg_socket_dir: Annotated[Path | None, typer.Option("--pg-socket-dir")] = None,
    pg_host: Annotated[
        str | None,
        typer.Option("--pg-host", help="For a backup job elsewhere: the database host's TLS name"),
    ] = None,
    tls_dir: Annotated[
        Path,
        typer.Option("--tls-dir", help="With --pg-host: ca.crt, tls.crt and tls.key live here"),
    ] = Path("/etc/pgbackrest/tls"),
    retention_full: Annotated[int, typer.Option("--retention-full")] = 2,
    retention_diff: Annotated[int, typer.Option("--retention-diff")] = 7,
    config_path: Annotated[
        Path, typer.Option("--config-path", help="Where pgbackrest.conf will be installed")
    ] = Path("/etc/pgbackrest/pgbackrest.conf"),
    work_dir: Annotated[Path, typer.Option("--work-dir")] = Path("/var/lib/pgbackrest"),
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Print pgbackrest.conf for an encrypted S3 repository with retention, and the
    postgresql.conf lines that archive every WAL segment through it. The file holds no
    secret: put the cipher pass in conf.d/secrets.conf beside it ("[global]", then
    "repo1-cipher-pass=..."; mode 0600), where pgBackRest reads it."""
    from armillary.kit.pitr import DatabaseHost, Repository, archive_conf, pgbackrest_config

    repo = Repository(
        path=repo_path,
        s3_bucket=repo_bucket,
        s3_endpoint=repo_endpoint,
        s3_region=repo_region,
        s3_key_type=repo_key_type,
        s3_uri_style="path" if repo_endpoint else "host",
        s3_ca_file=repo_ca_file,
    )
    host = (
        DatabaseHost(pg_host, tls_dir / "ca.crt", tls_dir / "tls.crt", tls_dir / "tls.key")
        if pg_host
        else None
    )
    rendered = {
        "pgbackrest_conf": pgbackrest_config(
            stanza=stanza,
            pg_data=pg_data,
            pg_port=pg_port,
            pg_socket_dir=pg_socket_dir,
            repo=repo,
            cipher_pass=None,
            retention_full=retention_full,
            retention_diff=retention_diff,
            work_dir=work_dir,
            pg_host=host,
        ),
        "postgresql_conf": archive_conf(config_path, stanza),
    }
    if print_data(output_format, rendered):
        return
    # Plain print: the files' text exactly, no Rich markup or wrapping.
    print(f"# {config_path}\n{rendered['pgbackrest_conf']}")
    print(f"# postgresql.conf (or a file it includes)\n{rendered['postgresql_conf']}", end="")
