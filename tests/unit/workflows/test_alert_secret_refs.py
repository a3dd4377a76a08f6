"""Which secret references a channel may use, and what a reference looks like."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from armillary.kit.errors import Unprocessable
from armillary.kit.secret_sources import SecretRef
from armillary.workflows.alerts.secret_refs import check_allowed, is_allowed, resolve
from armillary.workflows.alerts.senders import SendError
from armillary.workflows.settings import WorkflowSettings

PREFIXES = ["aws-secretsmanager:armillary/alerts/{project}/", "file:/run/secrets/alerts/{project}/"]
ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:armillary/alerts/p1/slack-AbCdEf"


@pytest.mark.parametrize(
    ("reference", "kind", "location"),
    [
        ("aws-secretsmanager:armillary/x", "secretsmanager", "armillary/x"),
        ("aws-secretsmanager:armillary/x#url", "secretsmanager", "armillary/x#url"),
        (f"aws-secretsmanager:{ARN}#key", "secretsmanager", f"{ARN}#key"),
        ("file:/run/secrets/a", "file", "/run/secrets/a"),
    ],
)
def test_references_parse(reference: str, kind: str, location: str) -> None:
    ref = SecretRef.parse("s", reference)
    assert (ref.kind, ref.location, ref.reference) == (kind, location, reference)


@pytest.mark.parametrize(
    "reference",
    [
        "vault:kv/x",
        "aws-secretsmanager:",
        "aws-secretsmanager:x#",
        "aws-secretsmanager:a b",
        "file:relative/path",
        "file:/run/secrets/../../etc/shadow",
        "file:/run//secrets/a",
        "file:/run/secrets/a#key",
        "ARMILLARY_SECRET_KEY",
    ],
)
def test_anything_else_is_refused_naming_the_forms(reference: str) -> None:
    with pytest.raises(ValueError, match=r"aws-secretsmanager:NAME_OR_ARN\[#key\] or file:/"):
        SecretRef.parse("s", reference)


def test_a_secret_by_arn_counts_by_its_name() -> None:
    assert SecretRef.parse("s", f"aws-secretsmanager:{ARN}").secret_name == (
        "armillary/alerts/p1/slack-AbCdEf"
    )
    allowed = ["aws-secretsmanager:armillary/alerts/p1/"]
    assert is_allowed(SecretRef.parse("s", f"aws-secretsmanager:{ARN}#url"), allowed)
    other = ARN.replace("/p1/", "/p2/")
    assert not is_allowed(SecretRef.parse("s", f"aws-secretsmanager:{other}"), allowed)
    # An ARN prefix may be allowed as it is written, too.
    by_arn = [f"aws-secretsmanager:{ARN.rsplit('/', 1)[0]}/"]
    assert is_allowed(SecretRef.parse("s", f"aws-secretsmanager:{ARN}"), by_arn)


def test_references_need_an_allowed_prefix_for_their_project() -> None:
    inline = {"signing_secret": "s" * 20}
    check_allowed(inline, [], "p1")  # inline secrets need no permission
    ours = {"url": {"secret_ref": "aws-secretsmanager:armillary/alerts/p1/hook#url"}}
    check_allowed(ours, PREFIXES, "p1")
    with pytest.raises(Unprocessable, match="outside the places allowed") as refused:
        check_allowed(ours, PREFIXES, "p2")
    assert refused.value.extra["allowed_prefixes"] == [
        "aws-secretsmanager:armillary/alerts/p2/",
        "file:/run/secrets/alerts/p2/",
    ]
    with pytest.raises(Unprocessable, match="not enabled"):
        check_allowed(ours, [], "p1")
    platform = {"password": {"secret_ref": "aws-secretsmanager:armillary/database#password"}}
    with pytest.raises(Unprocessable):
        check_allowed(platform, PREFIXES, "p1")


async def test_a_link_out_of_the_allowed_directory_is_not_read(tmp_path: Path) -> None:
    allowed = tmp_path / "alerts" / "p1"
    allowed.mkdir(parents=True)
    (tmp_path / "platform.key").write_text("platform-secret")
    (allowed / "good").write_text("channel-secret\n")
    (allowed / "escape").symlink_to(tmp_path / "platform.key")
    prefixes = [f"file:{tmp_path}/alerts/{{project}}/"]
    good = {"routing_key": {"secret_ref": f"file:{allowed}/good"}}
    assert await resolve(good, prefixes, "p1") == {"routing_key": "channel-secret"}
    escape = {"routing_key": {"secret_ref": f"file:{allowed}/escape"}}
    check_allowed(escape, prefixes, "p1")  # by its text it is inside
    with pytest.raises(SendError, match="not allowed") as refused:
        await resolve(escape, prefixes, "p1")
    assert "platform-secret" not in str(refused.value)


def test_the_operator_setting_is_checked() -> None:
    settings = WorkflowSettings(alert_secret_ref_prefixes=",".join(PREFIXES))  # type: ignore[arg-type]
    assert settings.alert_secret_ref_prefixes == PREFIXES
    for bad in ("vault:x/", "file:/run/secrets/alerts", "aws-secretsmanager:a#key"):
        with pytest.raises(ValidationError):
            WorkflowSettings(alert_secret_ref_prefixes=[bad])
