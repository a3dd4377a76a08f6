"""The CI/CD files: the GitHub workflows (actionlint, GitHub's workflow schema, and what they
must do) and the Jenkinsfile's stages."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import ROOT, checkov_reports, run, tool
from tests.deploy.dockerfile import parse

WORKFLOWS = ROOT / ".github" / "workflows"
CI = WORKFLOWS / "ci.yml"
RELEASE = WORKFLOWS / "release.yml"
ROLES = {"api", "control", "gateway", "scheduler", "worker", "migrations"}
JENKINS_STAGES = (
    "Lint",
    "Types",
    "Test",
    "Deploy check",
    "Images",
    "Scan and SBOM",
    "Publish",
    "Helm package",
)


def load(path: Path) -> dict[str, Any]:
    workflow: dict[Any, Any] = yaml.safe_load(path.read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads `on` as true
    return workflow


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps", []))


def test_workflows_pass_actionlint() -> None:
    run(tool("actionlint"), *map(str, sorted(WORKFLOWS.glob("*.yml"))), cwd=ROOT)


def test_workflows_match_githubs_schema() -> None:
    files = sorted(map(str, WORKFLOWS.glob("*.yml")))
    run(tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *files)


def test_workflows_pass_checkov() -> None:
    files = [arg for path in (CI, RELEASE) for arg in ("-f", str(path))]
    for report in checkov_reports(*files):
        assert report["summary"]["failed"] == 0, report["results"]
        assert report["summary"]["skipped"] == 0  # nothing skipped: nothing to justify


@pytest.mark.parametrize("path", [CI, RELEASE], ids=lambda p: p.name)
def test_actions_are_pinned_by_commit(path: Path) -> None:
    for job in load(path)["jobs"].values():
        for step in steps(job):
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", step["uses"]), step["uses"]


@pytest.mark.parametrize("path", [CI, RELEASE], ids=lambda p: p.name)
def test_permissions_are_least_privilege(path: Path) -> None:
    workflow = load(path)
    assert workflow["permissions"] == {"contents": "read"}
    for name, job in workflow["jobs"].items():
        granted = job.get("permissions", {})
        assert granted in ({}, {"contents": "read", "id-token": "write"}), name
        if granted:
            assert path == RELEASE, f"{name}: only releases sign in to AWS"


def test_ci_cancels_stale_runs() -> None:
    concurrency = load(CI)["concurrency"]
    assert "github.ref" in concurrency["group"]
    assert concurrency["cancel-in-progress"] is True


def test_ci_tests_against_service_containers() -> None:
    jobs = load(CI)["jobs"]
    testing = [job for job in jobs.values() if any(s.get("run") == "make test" for s in steps(job))]
    assert len(testing) == 1, "one job runs `make test`"
    services = testing[0]["services"]
    assert {"postgres", "redis", "rabbitmq"} <= services.keys()
    assert all(service["ports"] for service in services.values())


def test_ci_lints_and_type_checks() -> None:
    commands = {s.get("run") for job in load(CI)["jobs"].values() for s in steps(job)}
    assert {"make lint", "make typecheck", "make imports"} <= commands


def test_ci_builds_scans_and_describes_every_image_target() -> None:
    images = load(CI)["jobs"]["images"]
    assert set(images["strategy"]["matrix"]["target"]) == ROLES
    assert parse(ROOT / "deploy" / "docker" / "Dockerfile").stages.keys() >= ROLES
    uses = {s["uses"].split("@")[0]: s for s in steps(images) if "uses" in s}
    build = uses["docker/build-push-action"]["with"]
    assert build["file"] == "deploy/docker/Dockerfile"
    assert build["target"] == "${{ matrix.target }}"
    trivy = [s["with"] for s in steps(images) if "trivy-action" in s.get("uses", "")]
    assert any(t.get("exit-code") == "1" and "CRITICAL" in t["severity"] for t in trivy)
    assert any(t.get("format") == "cyclonedx" for t in trivy), "no SBOM"


def test_release_pushes_through_oidc_and_packages_the_chart() -> None:
    release = load(RELEASE)
    assert release["on"] == {"push": {"tags": ["v*"]}}
    text = RELEASE.read_text()
    assert "aws-access-key-id" not in text, "no stored AWS keys: OIDC only"
    jobs = release["jobs"]
    login = [s for s in steps(jobs["images"]) if "configure-aws-credentials" in s.get("uses", "")]
    assert login[0]["with"]["role-to-assume"]
    build = next(s for s in steps(jobs["images"]) if "build-push-action" in s.get("uses", ""))
    assert build["with"]["push"] is True
    assert build["with"]["sbom"] is True
    assert any("helm package" in s.get("run", "") for s in steps(jobs["chart"]))


def test_jenkinsfile_has_the_same_stages_on_a_kubernetes_agent() -> None:
    text = (ROOT / "Jenkinsfile").read_text()
    stages = re.findall(r"stage\('([^']+)'\)", text)
    assert stages == list(JENKINS_STAGES)
    assert re.search(r"agent\s*\{\s*kubernetes\s*\{", text)
    assert "disableConcurrentBuilds(abortPrevious: true)" in text
    # RabbitMQ runs in the build container: the tests need rabbitmqctl and its binaries.
    for service in ("postgres", "redis"):
        assert re.search(rf"- name: {service}\n\s+image: {service}:", text), service
    assert "sh 'make test'" in text
