"""Request and response models of alert channels, rules and deliveries.

A channel's settings are split by :data:`SECRET_FIELDS`: those are encrypted at rest and only
ever answered with a masked hint; the others are stored and returned as they are. A secret
setting may instead be a :class:`SecretReference` to a secret manager or a file, read at each
send (:mod:`.secret_refs`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Discriminator,
    EmailStr,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from armillary.kit.secret_sources import SecretRef

from .models import ChannelKind, DeliveryStatus, RuleKind

NAME = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")]
FILTER = Annotated[str, Field(min_length=1, max_length=64)]
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"

#: The settings of each channel kind that are secret.
SECRET_FIELDS: dict[ChannelKind, frozenset[str]] = {
    ChannelKind.EMAIL: frozenset({"password"}),
    ChannelKind.SLACK: frozenset({"webhook_url"}),
    ChannelKind.PAGERDUTY: frozenset({"routing_key"}),
    ChannelKind.WEBHOOK: frozenset({"url", "signing_secret"}),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SecretReference(_Strict):
    """A secret setting kept elsewhere: ``aws-secretsmanager:NAME_OR_ARN[#key]`` (``#key``
    picks a key of a JSON secret) or ``file:/absolute/path``; which ones a project may use is
    the operator's choice (``ARMILLARY_WORKFLOWS_ALERT_SECRET_REF_PREFIXES``)."""

    secret_ref: Annotated[str, Field(min_length=1, max_length=2048)]

    @field_validator("secret_ref")
    @classmethod
    def _known_form(cls, value: str) -> str:
        SecretRef.parse("secret_ref", value)  # ValueError names the accepted forms
        return value


def _form(value: Any) -> str:
    return "reference" if isinstance(value, dict | SecretReference) else "value"


# Each secret setting: its value inline, or a SecretReference. Told apart by shape, so a bad
# one is reported against its own form only.
_REFERENCE = Annotated[SecretReference, Tag("reference")]
SecretUrl = Annotated[Annotated[AnyHttpUrl, Tag("value")] | _REFERENCE, Discriminator(_form)]
SmtpPassword = Annotated[
    Annotated[str, Field(max_length=1024), Tag("value")] | _REFERENCE, Discriminator(_form)
]
RoutingKey = Annotated[
    Annotated[str, Field(min_length=1, max_length=128), Tag("value")] | _REFERENCE,
    Discriminator(_form),
]
SigningSecret = Annotated[
    Annotated[str, Field(min_length=16, max_length=256), Tag("value")] | _REFERENCE,
    Discriminator(_form),
]


class EmailConfig(_Strict):
    host: Annotated[str, Field(min_length=1, max_length=255)]
    port: Annotated[int, Field(ge=1, le=65_535)] = 587
    from_address: EmailStr
    to: Annotated[list[EmailStr], Field(min_length=1, max_length=50)]
    username: Annotated[str | None, Field(max_length=255)] = None
    password: SmtpPassword | None = None
    starttls: bool = True
    # Implicit TLS from the first byte (port 465) instead of STARTTLS.
    use_tls: bool = False

    @model_validator(mode="after")
    def _tls_once(self) -> EmailConfig:
        if self.starttls and self.use_tls:
            raise ValueError("choose starttls or use_tls, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self


class SlackConfig(_Strict):
    webhook_url: SecretUrl


class PagerDutyConfig(_Strict):
    routing_key: RoutingKey
    pagerduty_url: AnyHttpUrl = AnyHttpUrl(PAGERDUTY_URL)
    # Overrides the severity chosen by the rule kind.
    severity: Literal["critical", "error", "warning", "info"] | None = None


class WebhookConfig(_Strict):
    url: SecretUrl
    signing_secret: SigningSecret


CONFIG_MODELS: dict[ChannelKind, type[BaseModel]] = {
    ChannelKind.EMAIL: EmailConfig,
    ChannelKind.SLACK: SlackConfig,
    ChannelKind.PAGERDUTY: PagerDutyConfig,
    ChannelKind.WEBHOOK: WebhookConfig,
}


class _ChannelIn(_Strict):
    name: NAME
    enabled: bool = True


class EmailChannelIn(_ChannelIn):
    kind: Literal[ChannelKind.EMAIL]
    config: EmailConfig


class SlackChannelIn(_ChannelIn):
    kind: Literal[ChannelKind.SLACK]
    config: SlackConfig


class PagerDutyChannelIn(_ChannelIn):
    kind: Literal[ChannelKind.PAGERDUTY]
    config: PagerDutyConfig


class WebhookChannelIn(_ChannelIn):
    kind: Literal[ChannelKind.WEBHOOK]
    config: WebhookConfig


ChannelIn = Annotated[
    EmailChannelIn | SlackChannelIn | PagerDutyChannelIn | WebhookChannelIn,
    Field(discriminator="kind"),
]


class ChannelPatch(_Strict):
    """Fields to change; ``config`` is merged into the current settings (secrets left out
    stay as they are) and checked again as a whole."""

    name: NAME | None = None
    enabled: bool | None = None
    config: dict[str, Any] | None = None


class ChannelOut(BaseModel):
    id: UUID
    name: str
    kind: ChannelKind
    enabled: bool
    config: dict[str, Any]
    # Each secret setting as a masked hint ("…abcd"), never whole; one given by reference as
    # that reference (it names where the secret is, not what it is).
    secrets: dict[str, str | SecretReference]
    created_at: datetime
    updated_at: datetime


class RuleIn(_Strict):
    name: NAME
    kind: RuleKind
    channel_ids: Annotated[list[UUID], Field(min_length=1, max_length=20)]
    enabled: bool = True
    workflow: FILTER | None = None
    task: FILTER | None = None
    factor: Annotated[float, Field(ge=1.0, le=1000.0)] | None = None
    min_samples: Annotated[int, Field(ge=1, le=1000)] | None = None
    max_minutes: Annotated[int, Field(ge=1, le=60 * 24 * 30)] | None = None

    @model_validator(mode="after")
    def _fits_kind(self) -> RuleIn:
        duration = self.kind is RuleKind.TASK_DURATION_P95
        if not duration and (self.task or self.factor is not None or self.min_samples):
            raise ValueError("task, factor and min_samples apply to task_duration_p95 rules")
        if duration:
            self.factor = 2.0 if self.factor is None else self.factor
            self.min_samples = 5 if self.min_samples is None else self.min_samples
        deadline = self.kind is RuleKind.JOB_DEADLINE
        if deadline and self.max_minutes is None:
            raise ValueError("job_deadline rules need max_minutes")
        if not deadline and self.max_minutes is not None:
            raise ValueError("max_minutes applies to job_deadline rules")
        if len(set(self.channel_ids)) != len(self.channel_ids):
            raise ValueError("channel_ids are repeated")
        return self


class RuleOut(BaseModel):
    id: UUID
    name: str
    kind: RuleKind
    enabled: bool
    channel_ids: list[UUID]
    workflow: str | None
    task: str | None
    factor: float | None
    min_samples: int | None
    max_minutes: int | None
    created_at: datetime


class DeliveryOut(BaseModel):
    id: UUID
    channel_id: UUID
    event: str
    rule_id: UUID | None
    rule_name: str | None
    job_id: UUID | None
    task_run_id: UUID | None
    summary: str
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None
    sent_at: datetime | None
