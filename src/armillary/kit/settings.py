"""Settings from the environment (prefix ``ARMILLARY_``), one object passed down explicitly."""

from __future__ import annotations

import secrets
from functools import cached_property
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from armillary.kit.secret_sources import SecretSourcedSettings

# Values that must never protect a production deployment.
_KNOWN_DEFAULTS = {"", "changeme", "change-me", "secret", "password", "admin", "armillary"}
_MIN_SECRET_LENGTH = 32

# The distributed shape (ADR 0021): each service's process and its default port
# (`armillary serve <service>`), on 127.0.0.1 unless ARMILLARY_<SERVICE>_URL says where.
SERVICE_PORTS = {
    "identity": 8101,
    "data": 8102,
    "workflows": 8103,
    "registry": 8104,
    "serving": 8105,
    "tracking": 8106,
}
# The web console's process (`armillary serve console`, issue 19): not a service of the list
# above, since it has no schema, no database role, no service key and no internal routes;
# the gateway routes `/` and `/ui` to it (ARMILLARY_CONSOLE_URL).
CONSOLE_PORT = 8107


class InsecureSettings(ValueError):
    """Raised when the production profile is started with missing or default secrets."""


class Settings(SecretSourcedSettings):
    """Every knob of the platform. The embedded profile fills in what it can by itself.
    Secrets may come from AWS Secrets Manager or a file (``kit.secret_sources``)."""

    model_config = SettingsConfigDict(env_prefix="ARMILLARY_", extra="ignore")
    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {
            "secret_key",
            "previous_secret_keys",
            "admin_password",
            "database_url",
            "database_password",
            "database_direct_url",
            "redis_url",
            "rabbitmq_url",
            "service_key",
        }
    )

    profile: Literal["embedded", "production"] = "embedded"
    home: Path = Path(".armillary")
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None
    # How long an idle client connection stays open. Longer than the gateway's (or any load
    # balancer's) upstream idle timeout, so the proxy always closes first: a server closing a
    # pooled connection just as the proxy reuses it turns a good request into a reset.
    http_keep_alive_seconds: float = Field(default=75, gt=0)
    # Prometheus metrics of the API process: a listener of their own, never the public port
    # (0 turns it off). Keep it on a private interface.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=0, le=65_535)

    database_url: str | None = None
    # The database password, kept out of the URL. From a secret manager it is read again when
    # PostgreSQL refuses it, so a rotated password is picked up without a restart.
    database_password: SecretStr | None = None
    # Connections kept per process (as many again may open under bursts). Unset: by role,
    # API 10, worker 4, scheduler 3 (docs/operations.md has the budget).
    database_pool_size: int | None = Field(default=None, ge=1, le=200)
    # A transaction-mode pooler (PgBouncer, RDS Proxy) between the processes and PostgreSQL:
    # no prepared statement outlives its transaction, so none is cached by name.
    database_pooler: bool = False
    # PostgreSQL itself, for the sessions that must not go through that pooler (the
    # scheduler's leader lock, LISTEN for wake-ups). Unset: ARMILLARY_DATABASE_URL.
    database_direct_url: str | None = None
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

    # TLS (kit.tls). The server's certificate: the embedded server (and each service process)
    # then speaks HTTPS only, with HSTS.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # The CA bundle outgoing hops verify against (unset: the system's); each hop may have its
    # own. PostgreSQL speaks TLS with `database_sslmode=verify-full`; Redis with `rediss://`;
    # RabbitMQ with `amqps://`.
    tls_ca_file: Path | None = None
    database_sslmode: Literal["disable", "verify-full"] = "disable"
    database_ca_file: Path | None = None
    redis_ca_file: Path | None = None
    rabbitmq_ca_file: Path | None = None
    # Clients reach this process through a proxy that terminates TLS (a load balancer, the
    # gateway): the production profile then accepts a plain HTTP listener.
    tls_terminated_by_proxy: bool = False
    # The services' calls to each other pass through a service mesh's sidecars, which
    # encrypt them (mTLS): the production profile then accepts http:// service URLs. Nothing
    # else (the database, Redis, RabbitMQ) is excused.
    tls_service_mesh: bool = False

    # `armillary backup`: the directory backups go under (`backup create` without --output
    # makes one per backup there; `backup list` lists it), and the directory the audit
    # checkpoint is copied to, apart from the backups (another volume or account): it is the
    # evidence that a backed-up database was truncated, so whoever can rewrite the backups
    # should not be able to rewrite it too.
    backup_dir: Path | None = None
    backup_checkpoint_dir: Path | None = None

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
    # A new key is published in the JWKS this long before anything signs with it: more than
    # the gateway's JWKS cache_duration (ARMILLARY_GATEWAY_JWKS_CACHE_SECONDS, <= 30), since
    # Envoy does not refetch on an unknown kid (ADR 0023).
    signing_key_publish_lead_seconds: int = Field(default=35, ge=0, le=3600)

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
    # Writes to experiment tracking (/mlflow/...): a training loop's log calls, per user.
    rate_limit_tracking: str = "6000/minute"
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

    # The distributed shape (`armillary serve`, ADR 0021): where each service listens, for
    # the other services' clients and the gateway. Unset: 127.0.0.1 on its default port.
    identity_url: str | None = None
    data_url: str | None = None
    workflows_url: str | None = None
    registry_url: str | None = None
    serving_url: str | None = None
    tracking_url: str | None = None
    # This service process's own Ed25519 key (PEM, `armillary service-keys create`), from the
    # secret store like every secret (ARMILLARY_SERVICE_KEY_SECRET_ID or _FILE); unset:
    # `<home>/service-keys/<service>.key`. Never derived from the platform secret.
    service_key: SecretStr | None = None
    # Every service's public key (`<service>.pub`). Unset: `<home>/service-keys`.
    service_public_keys_dir: Path | None = None

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
        problems += [f"{hop} is plaintext off this machine" for hop in self.plaintext_hops()]
        if problems:
            raise InsecureSettings("; ".join(problems))
        return self

    @cached_property
    def database_dsn(self) -> str:
        if self.database_url:
            return self._with_password(self.database_url)
        return f"sqlite+aiosqlite:///{(self.home / 'armillary.db').resolve()}"

    @cached_property
    def database_direct_dsn(self) -> str | None:
        """PostgreSQL without the pooler (ARMILLARY_DATABASE_DIRECT_URL), when set."""
        return self._with_password(self.database_direct_url) if self.database_direct_url else None

    def _with_password(self, database_url: str) -> str:
        if self.database_password is None:
            return database_url
        from sqlalchemy.engine import make_url

        url = make_url(database_url).set(password=self.database_password.get_secret_value())
        return url.render_as_string(hide_password=False)

    def plaintext_hops(self) -> list[str]:
        """The hops leaving this machine without TLS (the production profile refuses them)."""
        from armillary.kit.tls import is_loopback, plaintext_service_urls

        hops = []
        if not (self.tls_cert_file or self.tls_terminated_by_proxy or is_loopback(self.host)):
            hops.append("the HTTP listener (ARMILLARY_TLS_CERT_FILE, or a TLS-terminating proxy)")
        if self.database_sslmode != "verify-full":
            # The pooler's DSN and PostgreSQL's own (leader lock, LISTEN) alike.
            for database in (self.database_url or "", self.database_direct_url or ""):
                if database.startswith("postgresql"):
                    hop = "PostgreSQL (ARMILLARY_DATABASE_SSLMODE=verify-full)"
                    hops += [h for h in _off_machine(hop, database) if h not in hops]
        if self.redis_url and self.redis_url.startswith("redis://"):
            hops += _off_machine("Redis (a rediss:// URL)", self.redis_url)
        if self.rabbitmq_url and self.rabbitmq_url.startswith("amqp://"):
            hops += _off_machine("RabbitMQ (an amqps:// URL)", self.rabbitmq_url)
        if self.tls_service_mesh:
            return hops
        # Calls to the other services of the distributed shape carry bearer tokens and data.
        return hops + plaintext_service_urls(self.service_urls())

    def ca_file(self, hop: Literal["database", "redis", "rabbitmq"]) -> Path | None:
        """The CA bundle ``hop`` verifies against: its own, else the platform's."""
        own: Path | None = getattr(self, f"{hop}_ca_file")
        return own or self.tls_ca_file

    @cached_property
    def trusted_proxy_networks(self) -> list[IPv4Network | IPv6Network]:
        return [ip_network(p, strict=False) for p in self.trusted_proxies]

    def service_urls(self) -> dict[str, str]:
        """Each service's base URL in the distributed shape."""
        return {
            service: (getattr(self, f"{service}_url") or f"http://127.0.0.1:{port}").rstrip("/")
            for service, port in SERVICE_PORTS.items()
        }

    def service_key_pem(self, service: str) -> bytes:
        """``service``'s private key: ARMILLARY_SERVICE_KEY (from the secret store), else its
        file under the keys directory; FileNotFoundError when there is none."""
        if self.service_key is not None:
            return self.service_key.get_secret_value().encode()
        path = self.service_keys_dir() / f"{service}.key"
        if not path.is_file():
            raise FileNotFoundError(
                f"the {service} service's key is not configured (ARMILLARY_SERVICE_KEY_FILE "
                f"or _SECRET_ID) and {path} is missing: "
                f"`armillary service-keys create {service}` makes one"
            )
        return path.read_bytes()

    def service_keys_dir(self) -> Path:
        return self.service_public_keys_dir or self.home / "service-keys"

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


def _off_machine(hop: str, url: str) -> list[str]:
    from armillary.kit.tls import is_loopback, url_host

    return [] if is_loopback(url_host(url)) else [hop]


def _is_weak(value: str, min_length: int = _MIN_SECRET_LENGTH) -> bool:
    return value.strip().lower() in _KNOWN_DEFAULTS or len(value) < min_length
