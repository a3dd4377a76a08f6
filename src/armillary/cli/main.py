"""``armillary``: run the platform and administer it from a terminal.

Start-up stays light (``tests/unit/cli/test_startup_imports.py`` keeps it so): this module and
the command modules import only Typer, Rich and the SDK. The server application, SQLAlchemy,
FastAPI and the ML libraries are imported inside the commands that run them.
"""

from __future__ import annotations

from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape

from armillary.cli import (
    admin,
    backup,
    datasets,
    doctor,
    engine,
    events,
    gateway,
    jobs,
    models,
    quickstart,
    runs,
    services,
    session,
    storage,
    tokens,
    workflows,
)
from armillary.cli.output import (
    OutputFormat,
    OutputOption,
    print_data,
    refresh_terminals,
    terminal,
)
from armillary.cli.password import PasswordStdinOption, read_password

T = TypeVar("T")

app = typer.Typer(help="Armillary: self-hosted ML workflow orchestration.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
users_app = typer.Typer(help="User accounts.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log.", no_args_is_help=True)
keys_app = typer.Typer(help="Token signing keys.", no_args_is_help=True)
secrets_app = typer.Typer(help="The platform secret.", no_args_is_help=True)


@app.callback()
def _before_each_command() -> None:
    # The terminal may have changed since a command module was imported (one process can
    # run several commands): read its width and colour again.
    refresh_terminals()


app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(audit_app, name="audit")
app.add_typer(keys_app, name="keys")
app.add_typer(secrets_app, name="secrets")
app.add_typer(backup.app, name="backup")
app.add_typer(datasets.app, name="datasets")
app.add_typer(storage.app, name="storage")
app.add_typer(workflows.app, name="workflow")
app.add_typer(jobs.app, name="jobs")
app.add_typer(models.app, name="models")
app.add_typer(runs.app, name="runs")
app.add_typer(events.app, name="events")
app.add_typer(tokens.app, name="tokens")
app.command("quickstart")(quickstart.quickstart)
app.command("worker")(engine.worker)
app.command("scheduler")(engine.scheduler)
app.command("login")(session.login)
app.command("logout")(session.logout)
app.command("doctor")(doctor.doctor)
app.command("gateway")(gateway.gateway)
app.command("serve")(services.serve)
app.add_typer(services.keys_app, name="service-keys")

console = terminal()
err = terminal(stderr=True)


def _run(action: Coroutine[Any, Any, T]) -> T:
    import asyncio  # only the commands that run against the database need an event loop

    return asyncio.run(action)


@app.command()
def up(
    host: Annotated[str | None, typer.Option(help="Bind address [ARMILLARY_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [ARMILLARY_PORT]")] = None,
    migrate: Annotated[bool, typer.Option(help="Apply migrations first")] = True,
    workers: Annotated[
        int,
        typer.Option(
            min=0, help="Local worker processes that run tasks", envvar="ARMILLARY_WORKERS"
        ),
    ] = 2,
    distributed: Annotated[
        bool,
        typer.Option(
            "--distributed",
            help="The production shape: the Envoy gateway, one process per service, the "
            "scheduler and the workers, on PostgreSQL, Redis and RabbitMQ",
        ),
    ] = False,
    database_roles: Annotated[
        bool,
        typer.Option(
            "--database-roles",
            help="With --distributed: each service connects as its own PostgreSQL role "
            "(armillary db roles), the scheduler and workers as armillary_workflows",
        ),
    ] = False,
) -> None:
    """Start the embedded platform: every service and the scheduler in one process, and a
    pool of local worker processes that run tasks. With --distributed, each in its own
    process behind the gateway, supervised and restarted when one dies."""
    import subprocess
    import sys

    from armillary.kit.settings import Settings

    settings = Settings()
    host, port = host or settings.host, port or settings.port
    if distributed:
        from armillary.cli import distributed as shape

        try:
            shape.check(settings)
        except shape.NotDistributable as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from exc
        if migrate:
            # In a child: the supervisor stays up for days and needs none of the services'
            # code, so it should not hold what migrating imports (about 70 MB).
            migrated = subprocess.run([sys.executable, "-m", "armillary.cli", "db", "upgrade"])
            if migrated.returncode != 0:
                raise typer.Exit(migrated.returncode)
        shape.run(settings, host, port, workers, database_roles=database_roles)
        return
    import uvicorn

    from armillary.app import create_app
    from armillary.migrations.runner import upgrade

    if migrate:
        upgrade(settings)
    from armillary.kit import tracing

    tracing.setup("platform")
    application = create_app(settings, run_scheduler=True)
    if workers:
        engine.WorkerPool(workers, engine.worker_env(settings, host, port)).start()
    if settings.metrics_port:
        from armillary.kit.metrics import serve_metrics

        serve_metrics(settings.metrics_host, settings.metrics_port)
    from armillary.kit.http_server import server_options

    uvicorn.run(application, host=host, port=port, **server_options(settings))


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument()] = "heads",
    service: Annotated[
        str | None,
        typer.Option(
            help="Migrate this service's schema alone (identity, data, workflows, registry, "
            "serving), e.g. with its own role's ARMILLARY_DATABASE_URL"
        ),
    ] = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Apply migrations up to REVISION: every service's schema, or one service's; prints
    the ones applied."""
    from dataclasses import asdict

    from armillary.kit.settings import Settings
    from armillary.migrations.runner import SERVICE_VERSIONS, upgrade

    if service is not None and service not in SERVICE_VERSIONS:
        err.print(f"[red]Unknown service {service!r}: one of {', '.join(SERVICE_VERSIONS)}[/red]")
        raise typer.Exit(2)
    applied = upgrade(Settings(), revision, service=service)
    if print_data(output, {"target": revision, "applied": [asdict(step) for step in applied]}):
        return
    for step in applied:
        console.print(f"Applied {step.revision}: {escape(step.description)}", highlight=False)
    console.print("[green]Database is up to date.[/green]")


@db_app.command("roles")
def db_roles(
    passwords_dir: Annotated[
        Path | None,
        typer.Option(
            help="Directory with each role's password in a file named after its service "
            "(made, random, where missing). Without it, roles get no password (certificate "
            "or peer authentication, or passwords set elsewhere)"
        ),
    ] = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Make a PostgreSQL role per service (armillary_<service>) owning its schema and
    nothing else. Run with an administrator's ARMILLARY_DATABASE_URL, after db upgrade."""
    import asyncio

    from armillary.kit.settings import Settings
    from armillary.migrations import roles

    settings = Settings()
    if not (settings.database_url or "").startswith("postgresql"):
        err.print("[red]Database roles need PostgreSQL (ARMILLARY_DATABASE_URL)[/red]")
        raise typer.Exit(2)
    passwords = roles.passwords_in(passwords_dir) if passwords_dir else {}
    asyncio.run(roles.grant(settings, passwords))
    made = [{"role": roles.role_name(service), "schema": service} for service in roles.SERVICES]
    if print_data(output, {"roles": made}):
        return
    for role in made:
        console.print(f"{role['role']} owns schema {role['schema']}")


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="Sign-in email")],
    name: Annotated[str, typer.Option(help="Display name")],
    role: Annotated[str, typer.Option(help="admin | data_scientist | user")] = "user",
    password: Annotated[
        str | None,
        typer.Option(help="At least 12 characters; prompted for (twice) when omitted"),
    ] = None,
    password_stdin: PasswordStdinOption = False,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Create an account (no server needed; writes to the configured database)."""
    from armillary.kit.settings import Settings

    secret = read_password(password, password_stdin, "Password", confirm=True)
    try:
        user_id = _run(admin.create_user(Settings(), email, name, role, secret))
    except admin.CommandError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    if print_data(output, {"id": str(user_id), "email": email, "name": name, "role": role}):
        return
    console.print(f"Created {email} ({role}), id {user_id}")


@audit_app.command("verify")
def audit_verify(output: OutputOption = OutputFormat.TABLE) -> None:
    """Recompute the audit hash chain and compare it with the outside checkpoint."""
    from dataclasses import asdict

    from armillary.kit.settings import Settings

    report = _run(admin.verify_audit(Settings()))
    if print_data(output, asdict(report)):
        if not report.ok:
            raise typer.Exit(1)
        return
    if report.ok:
        console.print(
            f"[green]Audit log intact:[/green] {report.records_checked} records verified."
        )
        return
    err.print(f"[red]Audit log verification FAILED[/red] ({report.records_checked} records read):")
    for problem in report.problems:
        err.print(f"  - {problem}")
    raise typer.Exit(1)


@keys_app.command("rotate")
def keys_rotate(
    output: OutputOption = OutputFormat.TABLE,
    now: Annotated[
        bool,
        typer.Option(
            "--now",
            help="Sign with the new key at once (a leaked key): gateways may refuse new "
            "tokens until they refetch the JWKS.",
        ),
    ] = False,
) -> None:
    """Make a new signing key: published at once, signing after
    ARMILLARY_SIGNING_KEY_PUBLISH_LEAD_SECONDS; the old one keeps verifying for the grace
    period after that."""
    from armillary.kit.settings import Settings

    kid, activates_at = _run(admin.rotate_keys(Settings(), immediately=now))
    if print_data(output, {"new_key": kid, "activates_at": activates_at.isoformat()}):
        return
    console.print(f"New signing key {kid}: published now, signs from {activates_at.isoformat()}")
    if now:
        err.print(
            "[yellow]Signing with it at once:[/yellow] gateways may refuse new tokens for up to "
            "their JWKS cache duration (ARMILLARY_GATEWAY_JWKS_CACHE_SECONDS, at most 30 s)."
        )


@keys_app.command("retire")
def keys_retire(
    kid: Annotated[str, typer.Argument(help="The key id to retire (not the newest key).")],
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Retire an older signing key now, before its grace period ends (a leaked key, after
    `keys rotate --now`): every process refuses its tokens at once, gateways within their
    JWKS cache duration."""
    from armillary.kit.settings import Settings

    if not _run(admin.retire_key(Settings(), kid)):
        err.print(f"[red]Not retired:[/red] {kid} is the newest key, retired, or unknown.")
        raise typer.Exit(1)
    if print_data(output, {"retired": kid}):
        return
    console.print(f"Retired signing key {kid}")


@secrets_app.command("rotate")
def secrets_rotate(output: OutputOption = OutputFormat.TABLE) -> None:
    """After changing ARMILLARY_SECRET_KEY (the old one listed in
    ARMILLARY_PREVIOUS_SECRET_KEYS): encrypt the signing keys and alert channel secrets again
    under the new secret and sign the audit checkpoints with it. Safe to run again; once it
    reports nothing left, the old secret can leave ARMILLARY_PREVIOUS_SECRET_KEYS."""
    from armillary.identity.keys.service import SigningKeyLocked
    from armillary.kit.secretbox import SecretBoxError
    from armillary.kit.settings import Settings

    try:
        counts = _run(admin.rotate_secrets(Settings()))
    except (SigningKeyLocked, SecretBoxError) as exc:
        err.print(f"[red]Cannot rotate:[/red] {exc}")
        raise typer.Exit(1) from exc
    if print_data(output, counts):
        return
    console.print(
        f"Encrypted again under the current secret: {counts['signing_keys']} signing keys, "
        f"{counts['alert_channels']} alert channels; "
        f"{counts['audit_checkpoints']} audit checkpoints signed again."
    )
