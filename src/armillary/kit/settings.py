"""Settings from the environment (prefix ``ARMILLARY_``), one object passed down explicitly."""

from __future__ import annotations

import secrets
from functools import cached_property
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Values that must never protect a production deployment.
_KNOWN_DEFAULTS = {"", "changeme", "change-me", "secret", "password", "admin", "armillary"}
_MIN_SECRET_LENGTH = 32


class InsecureSettings(ValueError):
    """Raised when the production profile is started with missing or default secrets."""


class Settings(BaseSettings):
    """Every knob of the platform. The embedded profile fills in what it can by itself."""

    model_config = SettingsConfigDict(env_prefix="ARMILLARY_", extra="ignore")

    profile: Literal["embedded", "production"] = "embedded"
    home: Path = Path(".armillary")
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None
    # Prometheus metrics of the API process: a listener of their own, never the public port
    # (0 turns it off). Keep it on a private interface.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=0, le=65_535)

    database_url: str | None = None
    # Connections kept per process (as many again may open under bursts). Unset: by role,
    # API 10, worker 4, scheduler 3 (docs/operations.md has the budget).
    database_pool_size: int | None = Field(default=None, ge=1, le=200)
    # A transaction-mode pooler (PgBouncer, RDS Proxy) between the processes and PostgreSQL:
    # no prepared statement outlives its transaction, so none is cached by name.
    database_pooler: bool = False
    # SQLite: how long a transaction waits for the one write lock before it fails (answered
    # 503 with Retry-After).
    database_busy_timeout_seconds: float = Field(default=30, gt=0)
    redis_url: str | None = None
    rabbitmq_url: str | None = None
    # Where committed events go (ADR 0020): the embedded shape's in-process bus, or RabbitMQ
    # (needs ARMILLARY_RABBITMQ_URL) for processes that must see each other's events.
    event_transport: Literal["in_process", "rabbitmq"] = "in_process"
    # Unacknowledged messages a consumer queue hands one process at a time.
    event_prefetch: int = Field(default=32, ge=1, le=10_000)
    # The retry ladder: a failed event waits in each delay queue in turn, then dead-letters.
    event_retry_delays_seconds: list[float] = Field(default_factory=lambda: [1.0, 5.0, 30.0])
    # Deliveries of one message (crash loops) before the broker dead-letters it.
    event_delivery_limit: int = Field(default=5, ge=1, le=1000)

    # Encrypts signing keys at rest and keys the audit checkpoint signature.
    secret_key: SecretStr | None = None
    # Secret keys this one replaced (a JSON list): values encrypted under them at rest (alert
    # channel secrets) still decrypt, and are re-encrypted under the current key when written.
    previous_secret_keys: list[SecretStr] = []
    admin_email: str = "admin@armillary.dev"
    admin_password: SecretStr | None = None

    jwt_issuer: str = "armillary"
    jwt_audience: str = "armillary-api"
    access_token_ttl_seconds: int = 900
    refresh_token_ttl_seconds: int = 14 * 24 * 3600
    signing_key_rotation_days: int = 30
    # A rotated-out key keeps verifying for this long, then is retired.
    signing_key_grace_seconds: int = 3600

    # OWASP password storage cheat sheet: argon2id, m=19 MiB, t=2, p=1.
    argon2_time_cost: int = 2
    argon2_memory_cost_kib: int = 19 * 1024
    argon2_parallelism: int = 1

    permission_cache_ttl_seconds: int = 300
    # The latest a key rotation or retirement made by another process reaches this one (its
    # event usually brings it sooner): the active signing key and the JWKS are re-read then.
    jwks_cache_ttl_seconds: int = Field(default=30, ge=1, le=3600)

    rate_limit_enabled: bool = True
    rate_limit_strategy: Literal["moving-window", "sliding-window-counter", "fixed-window"] = (
        "sliding-window-counter"
    )
    rate_limit_auth: str = "20/minute"
    rate_limit_read: str = "1200/minute"
    rate_limit_write: str = "300/minute"
    # What non-auth routes do when the limiter's store is unreachable: auth routes always fail
    # closed (503); the rest follow this setting.
    rate_limit_on_store_failure: Literal["allow", "deny"] = "allow"
    # Prediction traffic (predict, feedback, the Open Inference Protocol v2 model routes) is
    # not under the limits above but under budgets of its own, e.g. "6000/minute": per API key
    # (per account for bearer callers) and per deployment. Unset or empty: unlimited.
    rate_limit_predict_per_key: str | None = None
    rate_limit_predict_per_deployment: str | None = None
    # Sign-in throttling (OWASP authentication cheat sheet): failures of one account from one
    # client meet growing waits (each limit of the ladder, ';'-separated, adds a longer one);
    # an address is blocked after failures across accounts; and once an account has had
    # `login_failures_per_account`, clients that already failed for it wait too. A client
    # without failures for the account is never blocked on its account: nobody can lock the
    # owner out by failing on purpose.
    login_failures_per_client: str = "5/minute;10/15minutes;20/hour;50/day"
    login_failures_per_account: str = "30/15minutes"
    login_failures_per_address: str = "30/15minutes"
    # Comma-separated CIDRs whose X-Forwarded-For is believed.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("rate_limit_predict_per_key", "rate_limit_predict_per_deployment")
    @classmethod
    def _empty_is_unlimited(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @model_validator(mode="after")
    def _transport_needs_broker(self) -> Settings:
        if self.event_transport == "rabbitmq" and not self.rabbitmq_url:
            raise ValueError("ARMILLARY_EVENT_TRANSPORT=rabbitmq needs ARMILLARY_RABBITMQ_URL")
        if any(delay <= 0 for delay in self.event_retry_delays_seconds):
            raise ValueError("ARMILLARY_EVENT_RETRY_DELAYS_SECONDS must all be positive")
        return self

    @model_validator(mode="after")
    def _refuse_insecure_production(self) -> Settings:
        if self.profile != "production":
            return self
        problems = []
        if self.secret_key is None:
            problems.append("ARMILLARY_SECRET_KEY is not set")
        elif _is_weak(self.secret_key.get_secret_value()):
            problems.append(
                f"ARMILLARY_SECRET_KEY is a default or shorter than {_MIN_SECRET_LENGTH} characters"
            )
        if self.database_url is None:
            problems.append("ARMILLARY_DATABASE_URL is not set")
        if self.admin_password is not None and _is_weak(self.admin_password.get_secret_value(), 12):
            problems.append("ARMILLARY_ADMIN_PASSWORD is a default or too short")
        if problems:
            raise InsecureSettings("; ".join(problems))
        return self

    @cached_property
    def database_dsn(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.home / 'armillary.db').resolve()}"

    @cached_property
    def trusted_proxy_networks(self) -> list[IPv4Network | IPv6Network]:
        return [ip_network(p, strict=False) for p in self.trusted_proxies]

    def resolved_secret_key(self) -> str:
        """The secret key; in the embedded profile one is generated once and kept in ``home``."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.home / "secret.key"
        if path.exists():
            return path.read_text().strip()
        self.home.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        path.touch(mode=0o600)
        path.write_text(key)
        return key


def _is_weak(value: str, min_length: int = _MIN_SECRET_LENGTH) -> bool:
    return value.strip().lower() in _KNOWN_DEFAULTS or len(value) < min_length
