"""``armillary storage``: set up and inspect the S3 bucket (settings ``ARMILLARY_STORAGE_*``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from armillary.cli.output import OutputFormat, OutputOption, fit_table, print_data, terminal
from armillary.cli.session import fail

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import LifecycleRuleOutputTypeDef

    from armillary.kit.storage.admin import BucketDescription
    from armillary.kit.storage.settings import StorageSettings

app = typer.Typer(help="Object storage administration.", no_args_is_help=True)
console = terminal(soft_wrap=True)


def _s3_settings(action: str) -> StorageSettings:
    from pydantic import ValidationError

    from armillary.kit.storage.settings import StorageSettings

    try:
        settings = StorageSettings()
    except ValidationError as exc:
        problems = "; ".join(
            str(error["msg"]).removeprefix("Value error, ") for error in exc.errors()
        )
        fail(f"Invalid storage settings: {problems}")
    if settings.backend != "s3":
        fail(
            f"The storage backend is {settings.backend!r}: `armillary storage {action}` works on "
            "an S3 bucket; set ARMILLARY_STORAGE_BACKEND=s3 and ARMILLARY_STORAGE_S3_BUCKET"
        )
    return settings


def _rule_filter(rule: LifecycleRuleOutputTypeDef) -> str:
    selector = rule.get("Filter", {})
    tag = selector.get("Tag")
    if tag:
        return f"tag {tag['Key']}={tag['Value']}"
    if "And" in selector:
        return "combined filter"
    prefix = selector.get("Prefix", rule.get("Prefix", ""))
    return f"prefix {prefix!r}" if prefix else "every object"


def _rule_actions(rule: LifecycleRuleOutputTypeDef) -> str:
    actions = [
        f"to {t.get('StorageClass')} after {t.get('Days')} days"
        for t in rule.get("Transitions", [])
    ]
    noncurrent = rule.get("NoncurrentVersionExpiration")
    if noncurrent:
        actions.append(f"expire noncurrent versions after {noncurrent.get('NoncurrentDays')} days")
    expiration = rule.get("Expiration", {})
    if expiration.get("Days"):
        actions.append(f"expire after {expiration['Days']} days")
    if expiration.get("ExpiredObjectDeleteMarker"):
        actions.append("remove expired delete markers")
    abort = rule.get("AbortIncompleteMultipartUpload")
    if abort:
        actions.append(
            f"abort incomplete multipart uploads after {abort.get('DaysAfterInitiation')} days"
        )
    return "; ".join(actions) or "-"


def _print_description(description: BucketDescription, created: bool | None = None) -> None:
    table = Table(title=f"Bucket {escape(description['bucket'])}", show_header=False)
    table.add_column("Setting", style="bold")
    table.add_column("Value")
    if created is not None:
        table.add_row("Created now", "yes" if created else "no (already existed)")
    table.add_row("Versioning", description["versioning"])
    encryption = description["encryption"]
    if encryption is None:
        table.add_row("Default encryption", "[red]none[/red]")
    else:
        value = str(encryption["algorithm"])
        if encryption["kms_key_id"]:
            value += f" (key {escape(encryption['kms_key_id'])})"
        if encryption["bucket_key_enabled"]:
            value += ", bucket key"
        table.add_row("Default encryption", value)
    block = description["public_access_block"]
    if all(block.values()):
        table.add_row("Public access", "blocked (all four flags)")
    else:
        off = ", ".join(flag for flag, on in block.items() if not on)
        table.add_row("Public access", f"[red]not fully blocked[/red] (off: {off})")
    fit_table(table, console)
    console.print(table)

    rules = Table(title="Lifecycle rules")
    rules.add_column("Rule")
    rules.add_column("Status")
    rules.add_column("Applies to")
    rules.add_column("Actions")
    for rule in description["lifecycle_rules"]:
        rules.add_row(
            escape(rule.get("ID", "-")),
            rule.get("Status", "-"),
            escape(_rule_filter(rule)),
            _rule_actions(rule),
        )
    fit_table(rules, console)
    console.print(rules)


def _admin_errors(exc: Exception) -> str:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"S3 refused: {error.get('Code', '?')}: {error.get('Message', '')}".strip()
    return f"S3 request failed: {exc}"


@app.command("init")
def init(output: OutputOption = OutputFormat.TABLE) -> None:
    """Create the bucket if missing and harden it: versioning, default encryption, public
    access blocked, lifecycle rules. Safe to run again; S3 backend only."""
    settings = _s3_settings("init")
    from botocore.exceptions import BotoCoreError, ClientError

    from armillary.kit.storage.admin import init_bucket

    try:
        summary = init_bucket(settings)
    except (BotoCoreError, ClientError) as exc:
        fail(_admin_errors(exc))
    if print_data(output, summary):
        return
    _print_description(summary, created=summary["created"])
    console.print(f"[green]Bucket {escape(summary['bucket'])} is set up.[/green]")


@app.command("describe")
def describe(output: OutputOption = OutputFormat.TABLE) -> None:
    """Show the bucket's versioning, encryption, public access block and lifecycle rules."""
    settings = _s3_settings("describe")
    from botocore.exceptions import BotoCoreError, ClientError

    from armillary.kit.storage.admin import describe_bucket

    try:
        description = describe_bucket(settings)
    except (BotoCoreError, ClientError) as exc:
        fail(_admin_errors(exc))
    if print_data(output, description):
        return
    _print_description(description)
