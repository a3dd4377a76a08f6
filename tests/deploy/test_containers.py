"""Real containers (issue 15's "Checks that run here"): a Docker engine on its own socket, a
Debian base built with debootstrap, every image target built from it, and the compose stack
(deploy/compose.yaml with deploy/compose.check.yaml's stand-ins, ADR 0034) running the API
journey through the gateway; then `docker compose down` and up again, and the data is still
there. Also: a python task runs in the worker image under the Helm chart's Localhost seccomp
profile. The engine, the base and the build cache stay between runs (scripts/docker-engine.sh).
Slow by nature (minutes): `make deploy-check` runs it once; nothing here is skipped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY, ROOT, tool

pytestmark = pytest.mark.slow

BASE_IMAGE = "armillary/base:bookworm"
ENGINE = "unix:///run/armillary-docker/docker.sock"  # scripts/docker-engine.sh
PROJECT = "armillary-check"
ADMIN_EMAIL = "admin@armillary.dev"
ADMIN_PASSWORD = "check-Admin-password-0123"
HELM_SECCOMP = DEPLOY / "helm" / "armillary" / "files" / "worker-seccomp.json"
JOURNEY = Path(__file__).with_name("compose_journey.py")
PROBE = Path(__file__).with_name("sandbox_probe.py")


def sh(*args: str, env: dict[str, str], timeout: float = 900, **kw: object) -> str:
    result = subprocess.run(
        list(args), env=env, capture_output=True, text=True, timeout=timeout, check=False, **kw
    )
    assert result.returncode == 0, (
        f"{' '.join(args)}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result.stdout


@pytest.fixture(scope="module")
def docker_env() -> Iterator[dict[str, str]]:
    """The engine started, the base and every image built (each step skips what exists)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARMILLARY_")}
    env["DOCKER_HOST"] = ENGINE
    # A fresh machine has no docker client yet: scripts/docker-engine.sh installs it.
    running = shutil.which("docker") is not None and (
        subprocess.run(["docker", "info"], env=env, capture_output=True, check=False).returncode
        == 0
    )
    sh("bash", str(ROOT / "scripts" / "docker-engine.sh"), env=env)
    sh("bash", str(ROOT / "scripts" / "base-image.sh"), env=env)
    env["BASE_IMAGE"] = BASE_IMAGE
    if Path("/etc/ssl/certs/ca-certificates.crt").exists():
        env["ARMILLARY_BUILD_CA"] = "/etc/ssl/certs/ca-certificates.crt"
    print(sh("bash", str(ROOT / "scripts" / "build-images.sh"), "--standins", env=env))
    yield env
    if not running:  # this run started the engine: it stops it (data root kept)
        sh("bash", str(ROOT / "scripts" / "docker-engine.sh"), "stop", env=env)


class Stack:
    def __init__(self, env: dict[str, str], env_file: Path) -> None:
        self.env = env
        self.base = [
            tool("docker-compose"), "-p", PROJECT,
            "-f", str(DEPLOY / "compose.yaml"), "-f", str(DEPLOY / "compose.check.yaml"),
            "--env-file", str(env_file),
        ]  # fmt: skip

    def compose(self, *args: str, **kw: object) -> str:
        return sh(*self.base, *args, env=self.env, cwd=ROOT, **kw)

    def up(self) -> float:
        """Starts the stack and waits until every service is healthy; the seconds it took."""
        started = time.monotonic()
        try:
            self.compose("up", "-d", "--wait", "--wait-timeout", "300", "--no-build")
        except AssertionError:
            print(self.compose("ps", "-a"), self.compose("logs", "--tail", "40"))
            raise
        return time.monotonic() - started

    def journey(self, step: str) -> dict[str, object]:
        out = self.compose(
            "exec", "-T", "gateway", "python3", "-", step, "http://127.0.0.1:8000",
            ADMIN_EMAIL, ADMIN_PASSWORD, input=JOURNEY.read_text(), timeout=600,
        )  # fmt: skip
        result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
        return result


@pytest.fixture(scope="module")
def stack(docker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env_file = tmp_path_factory.mktemp("compose") / "compose.env"
    env_file.write_text(
        "ARMILLARY_SECRET_KEY=" + os.urandom(32).hex() + "\n"
        "POSTGRES_PASSWORD=" + os.urandom(12).hex() + "\n"
        "REDIS_PASSWORD=" + os.urandom(12).hex() + "\n"
        "RABBITMQ_PASSWORD=" + os.urandom(12).hex() + "\n"
        "S3_SECRET_KEY=" + os.urandom(12).hex() + "\n"
        f"ARMILLARY_ADMIN_PASSWORD={ADMIN_PASSWORD}\n"
        "GRAFANA_ADMIN_PASSWORD=unused\n"
        f"BASE_IMAGE={BASE_IMAGE}\n"
    )
    found = Stack(docker_env, env_file)
    found.compose("down", "--volumes", "--remove-orphans")  # a clean start
    try:
        yield found
    finally:
        found.compose("down", "--volumes", "--remove-orphans")


def test_the_journey_runs_through_the_gateway_and_survives_a_restart(stack: Stack) -> None:
    seconds = stack.up()
    print(f"compose stack healthy in {seconds:.0f}s")
    first = stack.journey("first")
    # The python task ran in a worker's sandbox: a PID namespace of its own, no network.
    sandbox = first["sandbox"]
    assert isinstance(sandbox, dict)
    assert sandbox["network"] is False
    assert sandbox["pid"] < 10
    assert first["prediction"]
    assert first["experiment"]  # the tracking service answered through the gateway
    assert first["console"] is True  # the console's container, behind the gateway

    stack.compose("down")  # the containers go, the volumes stay
    seconds = stack.up()
    print(f"compose stack healthy again in {seconds:.0f}s")
    after = stack.journey("after-restart")
    assert first["job"] in after["jobs"]  # PostgreSQL's volume
    assert after["dataset_intact"] is True  # the object store's volume
    assert after["models"] == ["points"]
    assert after["experiment"] == first["experiment"]  # tracking's rows, in PostgreSQL
    before, now = first["prediction"], after["prediction"]
    assert isinstance(before, dict)
    assert isinstance(now, dict)
    assert now["predictions"] == before["predictions"]
    assert now["model_version"] == before["model_version"]


def test_a_python_task_runs_under_the_charts_seccomp_profile(docker_env: dict[str, str]) -> None:
    """The worker pod's securityContext, as near as Docker gets: the chart's Localhost
    profile, an unmasked /proc, read-only root, no capabilities, no privilege escalation."""
    out = sh(
        "docker", "run", "--rm", "-i", "--network", "none", "--read-only",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
        "--security-opt", f"seccomp={HELM_SECCOMP}", "--security-opt", "systempaths=unconfined",
        "--tmpfs", "/tmp:uid=10001,gid=10001,mode=0700",
        "--tmpfs", "/var/lib/armillary:uid=10001,gid=10001,mode=0700",
        "--entrypoint", "python3", "armillary-worker:dev", "-",
        env=docker_env, input=PROBE.read_text(), timeout=300,
    )  # fmt: skip
    result = json.loads(out.strip().splitlines()[-1])
    assert result["sandboxed"] is True, result
    assert result["outcome"] == "succeeded", result
    assert "hello from the sandbox" in result["log"]
    assert result["outputs"]["network"] is False


def test_a_python_task_fails_under_dockers_default_profile(docker_env: dict[str, str]) -> None:
    """The control: without the profile the sandbox cannot start (so the test above proves
    the profile, not a lenient engine)."""
    result = subprocess.run(
        [
            "docker", "run", "--rm", "-i", "--network", "none", "--read-only",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
            "--tmpfs", "/tmp:uid=10001,gid=10001,mode=0700",
            "--tmpfs", "/var/lib/armillary:uid=10001,gid=10001,mode=0700",
            "--entrypoint", "python3", "armillary-worker:dev", "-",
        ],
        env=docker_env, input=PROBE.read_text(), capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    lines = result.stdout.strip().splitlines()
    if result.returncode == 0 and lines:
        outcome = json.loads(lines[-1])
        assert outcome["outcome"] != "succeeded" or not outcome["sandboxed"], outcome
