"""The images (deploy/docker/Dockerfile), the worker's seccomp profile and the compose stack
(deploy/compose.yaml), checked statically: hadolint, the Dockerfile's structure, and the
configuration `docker compose config` resolves (no daemon needed)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from armillary.kit.settings import CONSOLE_PORT, SERVICE_PORTS
from tests.deploy.conftest import DEPLOY, ROOT, checkov_reports, run, tool
from tests.deploy.dockerfile import Dockerfile, parse

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
# The check's stand-ins for third-party images (ADR 0034).
STANDINS = DEPLOY / "docker" / "standins" / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / "compose.env.example"
SECCOMP = DEPLOY / "seccomp" / "worker.json"

ROLES = ("api", "control", "gateway", "scheduler", "worker", "migrations")
# The services whose process loads no numeric or ML library run the lean image (ADR 0042).
CONTROL_SERVICES = {"identity", "tracking"}
LEAN_ROLES = {"control", "gateway", "migrations"}
ONE_SHOT_ROLES = {"migrations"}
# hadolint rules ignored inline in the Dockerfile, each for a reason.
JUSTIFIED_IGNORES = {
    "DL3008": "apt versions unpinned: Debian's security updates land under the same suite, "
    "and a pin breaks the build when the archive moves on",
}
NAMESPACE_SYSCALLS = {"unshare", "clone", "mount", "umount2", "pivot_root", "setns"}
# Ports published to the host besides the gateway's: development only, on loopback
# (documented at the top of compose.yaml).
DEV_PORTS = {"prometheus": 9090, "grafana": 3000}
DATA_STORES = {"postgres", "redis", "rabbitmq", "objectstore"}
# Every service the code runs as a process of its own (`armillary serve`), and its port.
SERVICES = dict(SERVICE_PORTS)


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse(DOCKERFILE)


def compose(*args: str, check: bool = True) -> Any:
    return run(tool("docker-compose"), "-f", str(COMPOSE), *args, check=check, cwd=ROOT)


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    """The resolved compose model, with the example env file and every profile."""
    result = compose(
        "--env-file", str(ENV_EXAMPLE), "--profile", "dashboards", "config", "--format", "json"
    )
    return json.loads(result.stdout)


# --- the Dockerfile


@pytest.mark.parametrize("dockerfile_path", [DOCKERFILE, STANDINS], ids=["images", "standins"])
def test_hadolint_passes_with_only_justified_ignores(dockerfile_path: Path) -> None:
    run(tool("hadolint"), str(dockerfile_path))
    ignored = re.findall(r"#\s*hadolint ignore=([\w,]+)", dockerfile_path.read_text())
    rules = {rule for group in ignored for rule in group.split(",")}
    assert rules <= JUSTIFIED_IGNORES.keys(), f"unjustified hadolint ignores: {rules}"


@pytest.mark.parametrize("dockerfile_path", [DOCKERFILE, STANDINS], ids=["images", "standins"])
def test_checkov_passes_with_only_justified_skips(dockerfile_path: Path) -> None:
    [report] = checkov_reports("-f", str(dockerfile_path))
    summary = report["summary"]
    assert summary["failed"] == 0, report["results"]
    assert summary["parsing_errors"] == 0
    for reason in re.findall(r"checkov:skip=CKV\w+:(.*)", dockerfile_path.read_text()):
        assert reason.strip(), "a checkov skip without its reason"


def test_base_image_is_an_argument_declared_before_the_first_from(dockerfile: Dockerfile) -> None:
    args = [i.args for i in dockerfile.preamble if i.keyword == "ARG"]
    assert "BASE_IMAGE=python:3.11-slim" in args
    first = next(iter(dockerfile.stages.values()))
    assert first.base == "${BASE_IMAGE}"


def test_every_role_has_a_target(dockerfile: Dockerfile) -> None:
    assert set(ROLES) <= dockerfile.stages.keys()


@pytest.mark.parametrize("role", ROLES)
def test_role_runs_as_a_non_root_user(dockerfile: Dockerfile, role: str) -> None:
    users = dockerfile.effective(role, "USER")
    assert users, f"{role} sets no USER: it would run as root"
    user = users[-1].args.split(":")[0]
    assert user not in {"root", "0"}


@pytest.mark.parametrize("role", ROLES)
def test_role_has_a_healthcheck(dockerfile: Dockerfile, role: str) -> None:
    checks = dockerfile.effective(role, "HEALTHCHECK")
    assert checks, f"{role} has no HEALTHCHECK"
    if role in ONE_SHOT_ROLES:
        assert checks[-1].args == "NONE"  # explicit: a one-shot has nothing to probe
    else:
        assert "CMD" in checks[-1].args


@pytest.mark.parametrize("role", ROLES)
def test_role_carries_oci_labels(dockerfile: Dockerfile, role: str) -> None:
    labels = " ".join(i.args for i in dockerfile.effective(role, "LABEL"))
    for key in ("title", "source", "version", "revision", "created", "licenses", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels, key


@pytest.mark.parametrize("role", ROLES)
def test_role_holds_no_build_tools(dockerfile: Dockerfile, role: str) -> None:
    """The final stages get the venv from the build stages, never uv, caches or sources."""
    chain = [stage.name for stage in dockerfile.chain(role)]
    assert not {"build", "build-gateway", "build-lean"} & set(chain)
    for copy in dockerfile.effective(role, "COPY"):
        if copy.args.startswith("--from="):
            assert copy.args.endswith("/opt/armillary/venv /opt/armillary/venv"), copy.args
        assert "/opt/uv" not in copy.args
        assert "src" not in copy.args.split()
    for step in dockerfile.effective(role, "RUN"):
        assert not re.search(r"\b(gcc|g\+\+|build-essential|make)\b", step.args), step.args


def test_dependencies_come_from_the_lock_without_dev(dockerfile: Dockerfile) -> None:
    build = dockerfile.stages["build"]
    copies = " ".join(i.args for i in build.instructions if i.keyword == "COPY")
    assert "uv.lock" in copies
    syncs = [i.args for i in build.instructions if i.keyword == "RUN" and "uv sync" in i.args]
    assert syncs
    assert all("--frozen --no-dev" in s for s in syncs)


@pytest.mark.parametrize("role", ["api", "control", "gateway"])
def test_image_carries_envoy_for_the_gateway(dockerfile: Dockerfile, role: str) -> None:
    """The Helm chart runs `gateway` from the control image by default: all carry Envoy."""
    copies = [i.args for i in dockerfile.effective(role, "COPY") if i.args.startswith("--from=")]
    stage = copies[-1].split()[0].removeprefix("--from=")
    assert stage in ("build-gateway", "build-lean")
    groups = " ".join(i.args for i in dockerfile.stages[stage].instructions)
    assert "--group gateway" in groups


@pytest.mark.parametrize("role", ROLES)
def test_only_the_roles_that_load_models_carry_the_ml_libraries(
    dockerfile: Dockerfile, role: str
) -> None:
    copies = [i.args for i in dockerfile.effective(role, "COPY") if i.args.startswith("--from=")]
    lean = copies[-1].startswith("--from=build-lean ")
    assert lean == (role in LEAN_ROLES), role


def test_the_control_services_run_the_lean_image(stack: dict[str, Any]) -> None:
    services = stack["services"]
    for name in SERVICES:
        target = services[name]["build"]["target"]
        assert target == ("control" if name in CONTROL_SERVICES else "api"), name
        assert (
            services[name]["image"]
            .split(":")[0]
            .endswith("-control" if name in CONTROL_SERVICES else "armillary")
        ), name


def test_the_ca_reaches_builds_only_as_a_secret_mount(dockerfile: Dockerfile) -> None:
    instructions = [i for stage in dockerfile.stages.values() for i in stage.instructions]
    uses = [i for i in instructions if "/run/secrets/ca" in i.args]
    assert uses, "no build step can use a CA"
    for instruction in uses:
        assert instruction.keyword == "RUN", instruction
        assert "--mount=type=secret,id=ca" in instruction.args
    for instruction in instructions:
        if instruction.keyword in {"COPY", "ADD", "ENV", "ARG"}:
            assert not re.search(r"(?i)\bca\b|\.pem|\.crt|secrets", instruction.args), instruction


def test_the_worker_image_has_bubblewrap(dockerfile: Dockerfile) -> None:
    installs = " ".join(i.args for i in dockerfile.effective("worker", "RUN"))
    assert re.search(r"apt-get install [^&]*\bbubblewrap\b", installs)


def test_dockerignore_admits_only_what_the_build_needs() -> None:
    patterns = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert patterns[0] == "*", "the context is an allowlist"
    admitted = {p[1:] for p in patterns if p.startswith("!")}
    assert {"pyproject.toml", "uv.lock", "src/"} <= admitted
    assert not admitted & {".env", ".git", ".venv", ".tools", "deploy/compose.env"}


# --- the worker's seccomp profile


def test_seccomp_profile_is_the_default_plus_the_namespace_syscalls() -> None:
    profile = json.loads(SECCOMP.read_text())
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    unconditional = {
        name
        for rule in profile["syscalls"]
        if rule["action"] == "SCMP_ACT_ALLOW"
        and not ({"args", "includes", "excludes"} & rule.keys())
        for name in rule["names"]
    }
    assert unconditional >= NAMESPACE_SYSCALLS
    # Docker's default still decides the rest: what it keeps for capabilities stays closed.
    assert {"read", "write", "execve"} <= unconditional
    assert not unconditional & {"bpf", "init_module", "kexec_load", "reboot", "open_by_handle_at"}
    clone3 = [rule for rule in profile["syscalls"] if rule["names"] == ["clone3"]]
    # ENOSYS: the C library falls back to clone, whose flags the filter sees.
    assert [rule["errnoRet"] for rule in clone3] == [38]


def test_the_charts_profile_is_generated_from_the_workers() -> None:
    """One profile for both: the chart's Localhost file is deploy/seccomp/worker.json
    resolved for a pod without capabilities (scripts/seccomp_localhost.py)."""
    run(sys.executable, str(ROOT / "scripts" / "seccomp_localhost.py"), "--check")
    chart = json.loads(
        (DEPLOY / "helm" / "armillary" / "files" / "worker-seccomp.json").read_text()
    )
    assert not any({"includes", "excludes"} & rule.keys() for rule in chart["syscalls"])


# --- the compose stack


def test_compose_config_validates() -> None:
    compose("--env-file", str(ENV_EXAMPLE), "config", "--quiet")


def test_compose_has_no_secret_defaults() -> None:
    """Without the env file compose refuses, naming each secret; no secret has a fallback."""
    result = compose("config", "--quiet", check=False)
    assert result.returncode != 0
    for secret in (
        "ARMILLARY_SECRET_KEY",
        "POSTGRES_PASSWORD",
        "REDIS_PASSWORD",
        "RABBITMQ_PASSWORD",
    ):
        assert f"required variable {secret} is missing" in result.stderr
    for name, modifier in re.findall(r"\$\{(\w+)([^}]*)\}", COMPOSE.read_text()):
        if re.search(r"PASSWORD|SECRET|_KEY$", name):
            assert modifier.startswith(":?"), f"${{{name}{modifier}}} has a default"


def test_the_stack_is_the_whole_distributed_shape(stack: dict[str, Any]) -> None:
    services = stack["services"]
    assert set(SERVICES) >= {"identity", "data", "workflows", "registry", "serving", "tracking"}
    expected = DATA_STORES | set(SERVICES)
    others = {"gateway", "console", "scheduler", "worker", "prometheus", "grafana"}
    assert expected | others <= services.keys()
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["grafana"]["profiles"] == ["dashboards"]


def test_every_service_is_wired_like_the_others(stack: dict[str, Any]) -> None:
    """Each service serves on its port with its own key, every process knows its URL, the
    gateway waits until it is healthy, and the key one-shot makes its key."""
    services = stack["services"]
    for service, port in SERVICES.items():
        process = services[service]
        assert process["command"][:2] == ["serve", service], service
        env = process["environment"]
        assert env["ARMILLARY_SERVICE_KEY_FILE"] == f"/etc/armillary/service-keys/{service}.key"
        assert f"http://127.0.0.1:{port}/readyz" in process["healthcheck"]["test"], service
        for name in ("gateway", "scheduler", "worker", *SERVICES):
            variable = f"ARMILLARY_{service.upper()}_URL"
            assert services[name]["environment"][variable] == f"http://{service}:{port}", name
        assert services["gateway"]["depends_on"][service]["condition"] == "service_healthy"
    script = " ".join(services["service-keys"]["command"])
    (names,) = re.findall(r"for service in ([\w ]+); do", script)
    assert set(names.split()) == set(SERVICES)


def _one_shots(services: dict[str, Any]) -> set[str]:
    return {name for name, service in services.items() if service.get("restart") == "no"}


def test_every_service_has_a_healthcheck_or_is_a_one_shot(stack: dict[str, Any]) -> None:
    services = stack["services"]
    for name in services.keys() - _one_shots(services):
        check = services[name].get("healthcheck", {})
        assert check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable"), f"{name} turns its healthcheck off"


def test_armillary_processes_wait_for_the_migrations(stack: dict[str, Any]) -> None:
    services = stack["services"]
    assert services["migrations"]["build"]["target"] == "migrations"
    armillary = {n for n, s in services.items() if "build" in s} - _one_shots(services)

    def reaches_migrations(name: str, seen: frozenset[str] = frozenset()) -> bool:
        for dependency, edge in services[name].get("depends_on", {}).items():
            if dependency == "migrations":
                return edge["condition"] == "service_completed_successfully"
            if dependency not in seen and reaches_migrations(dependency, seen | {name}):
                return True
        return False

    assert {"identity", "gateway", "scheduler", "worker"} <= armillary
    for name in armillary:
        assert reaches_migrations(name), f"{name} may start before the migrations ran"


def test_the_worker_runs_with_the_sandbox_profile(stack: dict[str, Any]) -> None:
    worker = stack["services"]["worker"]
    options = worker["security_opt"]
    profile = next(o.split("=", 1)[1] for o in options if o.startswith("seccomp="))
    assert (COMPOSE.parent / profile).resolve() == SECCOMP.resolve()
    assert "systempaths=unconfined" in options
    assert "no-new-privileges:true" in options
    assert worker["build"]["target"] == "worker"


def test_armillary_containers_are_locked_down(stack: dict[str, Any]) -> None:
    for name, service in stack["services"].items():
        if "build" not in service:
            continue
        assert service.get("read_only") is True, name
        assert service.get("cap_drop") == ["ALL"], name
        assert not service.get("privileged"), name
        assert "user" not in service, name  # the image's non-root user
        assert "no-new-privileges:true" in service["security_opt"], name


def test_the_console_runs_behind_the_gateway_without_secrets(stack: dict[str, Any]) -> None:
    """The console (issue 19) is a process of its own that the gateway routes `/` and `/ui`
    to, calling the API back through the gateway; it holds no database URL, key or secret,
    and the services trust its address to pass on the browser's."""
    services = stack["services"]
    console = services["console"]
    assert console["command"][:2] == ["serve", "console"]
    assert console["build"]["target"] == "control"  # the lean image (ADR 0042)
    assert console["image"].split(":")[0].endswith("-control")
    env = console["environment"]
    assert env["ARMILLARY_CONSOLE_API_URL"] == "http://gateway:8000"
    assert f"http://127.0.0.1:{CONSOLE_PORT}/readyz" in console["healthcheck"]["test"]
    assert not [name for name in env if re.search(r"DATABASE|SECRET|PASSWORD|_KEY", name)], env
    assert not console.get("volumes"), "the console mounts no service keys"
    gateway = services["gateway"]
    assert gateway["environment"]["ARMILLARY_CONSOLE_URL"] == f"http://console:{CONSOLE_PORT}"
    assert console["depends_on"]["gateway"]["condition"] == "service_healthy"
    address = console["networks"]["private"]["ipv4_address"]
    for service in SERVICES:
        trusted = services[service]["environment"]["ARMILLARY_TRUSTED_PROXIES"].split(",")
        assert f"{address}/32" in trusted, service
    assert not console.get("ports")


def test_only_the_gateway_is_published(stack: dict[str, Any]) -> None:
    for name, service in stack["services"].items():
        for port in service.get("ports", []):
            if name == "gateway":
                assert port["target"] == 8000
            else:
                assert DEV_PORTS.get(name) == port["target"], f"{name} publishes {port}"
                assert port["host_ip"] == "127.0.0.1", f"{name} is published off loopback"


def test_data_stores_sit_on_the_internal_network_only(stack: dict[str, Any]) -> None:
    assert stack["networks"]["private"]["internal"] is True
    for name in DATA_STORES:
        assert set(stack["services"][name]["networks"]) == {"private"}, name


def test_prometheus_scrapes_every_service_and_the_gateway(stack: dict[str, Any]) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    port = stack["services"]["identity"]["environment"]["ARMILLARY_METRICS_PORT"]
    for service in SERVICES:
        # One job per process kind: the SLO rules evaluate per job.
        assert jobs[service]["static_configs"] == [{"targets": [f"{service}:{port}"]}]
    assert jobs["console"]["static_configs"] == [{"targets": [f"console:{port}"]}]
    assert jobs["gateway"]["metrics_path"] == "/stats/prometheus"
    assert jobs["gateway"]["static_configs"] == [{"targets": ["gateway:9902"]}]
    mounts = {v["target"]: v["source"] for v in stack["services"]["prometheus"]["volumes"]}
    for pattern in config["rule_files"]:
        assert Path(mounts[str(Path(pattern).parent)]) == DEPLOY / "prometheus" / "rules"


def test_grafana_loads_the_dashboards(stack: dict[str, Any]) -> None:
    """Grafana (profile `dashboards`) mounts the generated dashboards; their content is
    checked by test_dashboards.py and, against a running stack, test_prometheus_scrape.py."""
    provider = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/armillary.yaml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    mounts = {v["target"]: v["source"] for v in stack["services"]["grafana"]["volumes"]}
    assert Path(mounts[path]) == DEPLOY / "grafana" / "dashboards"
    assert len(list((DEPLOY / "grafana" / "dashboards").glob("*.json"))) == 4


# --- the check's override (deploy/compose.check.yaml, ADR 0034)


def test_the_check_override_swaps_only_third_party_images_and_shares_one_namespace() -> None:
    result = run(
        tool("docker-compose"), "-f", str(COMPOSE), "-f", str(DEPLOY / "compose.check.yaml"),
        "--env-file", str(ENV_EXAMPLE), "config", "--format", "json", cwd=ROOT,
    )  # fmt: skip
    services = json.loads(result.stdout)["services"]
    assert services["netns"]["network_mode"] == "none"
    for name, service in services.items():
        if name == "netns":
            continue
        assert service["network_mode"] == "service:netns", name
        assert not service.get("ports"), name
        assert "build" not in service, name  # scripts/build-images.sh builds them
    for name in DATA_STORES:
        assert services[name]["image"].startswith("armillary-standin-"), name
    # The worker keeps its sandbox's profile, and both workers run.
    for name in ("worker", "worker-2"):
        assert "systempaths=unconfined" in services[name]["security_opt"]
        assert services[name]["image"].startswith("armillary-worker:")
    # One /metrics port per long-running process in the shared namespace.
    ports = []
    for service in services.values():
        env = service.get("environment", {})
        if service.get("restart") == "no" or "ARMILLARY_METRICS_PORT" not in env:
            continue
        ports.append(env.get("ARMILLARY_WORKFLOWS_METRICS_PORT", env["ARMILLARY_METRICS_PORT"]))
    # The services, the gateway, the console, the scheduler and the two workers.
    assert len(ports) == len(set(ports)) == len(SERVICES) + 5, ports
    hosts = {re.split("[:=]", entry)[0] for entry in services["netns"]["extra_hosts"]}
    assert hosts >= {*SERVICES, "gateway", "console"}, hosts
