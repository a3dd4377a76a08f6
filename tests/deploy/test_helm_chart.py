"""Static checks of the Helm chart deploy/helm/armillary: lint, schema, Kubernetes API
validation, checkov, and properties of the rendered manifests (issue 15, item 3).

No cluster runs here, so every check reads what `helm template` renders."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from armillary.kit.settings import CONSOLE_PORT, SERVICE_PORTS
from tests.deploy.conftest import DEPLOY, checkov_reports, run, tool

CHART = DEPLOY / "helm" / "armillary"
ALL_FEATURES = CHART / "ci" / "all-features-values.yaml"
RELEASE = "arm"
KUBERNETES_VERSION = "1.30.0"  # the oldest the chart supports (hostUsers, procMount)
# Every service the code runs as a process of its own, and its port: a service the chart
# leaves out fails the tests that walk this table.
SERVICES = dict(SERVICE_PORTS)
# Kinds kubernetes-validate has no schema for: the CRDs of operators the chart integrates with.
CRD_KINDS = {
    "ExternalSecret",
    "ServiceMonitor",
    "PrometheusRule",
    "ScaledObject",
    "TriggerAuthentication",
}

# checkov: checks skipped for the whole chart, each with its reason.
CHECKOV_SKIPS = {
    "CKV_K8S_21": "no namespace in the manifests: the release namespace comes from "
    "`helm install --namespace`, as in every chart",
    "CKV_K8S_43": "images are pinned by an immutable tag (CI deploys the commit's tag); "
    "ECR tag immutability is set by Terraform",
    "CKV_K8S_15": "IfNotPresent is right for immutable tags; Always only adds registry calls",
}
# checkov: findings accepted on one resource only, each with its reason (anything else fails).
CHECKOV_EXCEPTIONS = {
    ("CKV_K8S_31", "Deployment.default.arm-armillary-worker"): "the worker's Localhost "
    "profile is RuntimeDefault plus the namespace syscalls bubblewrap needs (issue 15)",
    ("CKV_K8S_23", "DaemonSet.default.arm-armillary-seccomp-installer"): "writes the "
    "profile into the root-owned kubelet directory; runs with no capability at all",
    ("CKV_K8S_40", "DaemonSet.default.arm-armillary-seccomp-installer"): "uid 0 for the "
    "same reason; nothing else runs in that pod",
}


def helm(helm_env: dict[str, str], *args: str, check: bool = True) -> Any:
    return run(tool("helm"), *args, check=check, env=helm_env)


def render(helm_env: dict[str, str], *args: str) -> str:
    return helm(helm_env, "template", RELEASE, str(CHART), *args).stdout


def documents(manifest: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def name(component: str) -> str:
    return f"{RELEASE}-armillary-{component}"


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in {"Deployment", "DaemonSet", "Job", "StatefulSet"}:
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def default_manifest(helm_env: dict[str, str]) -> str:
    return render(helm_env)


@pytest.fixture(scope="module")
def full_manifest(helm_env: dict[str, str]) -> str:
    return render(helm_env, "-f", str(ALL_FEATURES))


@pytest.fixture(scope="module")
def default_docs(default_manifest: str) -> list[dict[str, Any]]:
    return documents(default_manifest)


@pytest.fixture(scope="module")
def full_docs(full_manifest: str) -> list[dict[str, Any]]:
    return documents(full_manifest)


@pytest.fixture(params=["default", "full"])
def docs(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return request.getfixturevalue(f"{request.param}_docs")


# --- lint, schema and API validation -------------------------------------------------------


@pytest.mark.parametrize("values", [[], ["-f", str(ALL_FEATURES)]], ids=["default", "full"])
def test_lint_strict(helm_env: dict[str, str], values: list[str]) -> None:
    helm(helm_env, "lint", "--strict", str(CHART), *values)


@pytest.mark.parametrize("variant", ["default", "full"])
def test_rendered_manifests_pass_kubernetes_validate_strict(
    request: pytest.FixtureRequest, variant: str, tmp_path: Path
) -> None:
    manifest: str = request.getfixturevalue(f"{variant}_manifest")
    docs = documents(manifest)
    result = run(
        tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, "-", input=manifest
    )
    output = result.stdout + result.stderr
    built_in = [doc for doc in docs if doc["kind"] not in CRD_KINDS]
    assert output.count(" passed for resource ") == len(built_in), output
    unknown = {line for line in output.splitlines() if "Couldn't find schema" in line}
    assert all(any(f"kind {kind} " in line for kind in CRD_KINDS) for line in unknown), unknown


def test_kubernetes_validate_rejects_an_unknown_field(default_docs: list[dict[str, Any]]) -> None:
    """The validation above is strict: a misspelt field in a rendered manifest fails it."""
    deployment = dict(of_kind(default_docs, "Deployment")[name("identity")])
    deployment["spec"] = {**deployment["spec"], "replicaz": 3}
    result = run(
        tool("kubernetes-validate"),
        "--strict",
        "-k",
        KUBERNETES_VERSION,
        "-",
        input=yaml.safe_dump(deployment),
        check=False,
    )
    assert result.returncode != 0
    assert "replicaz" in result.stdout + result.stderr


BAD_VALUES = {
    "worker concurrency 0": (["--set", "worker.concurrency=0"], "/worker/concurrency"),
    "unknown profile": (["--set", "config.profile=dev"], "/config/profile"),
    "misspelt key": (["--set", "gateway.replica=3"], "replica"),
    "unknown service": (["--set", "services.billing.replicas=1"], "billing"),
    "no limits": (["--set", "apiDefaults.resources.limits=null"], "/apiDefaults/resources"),
    "CPU target over 100%": (
        ["--set", "services.data.autoscaling.targetCPUUtilizationPercentage=150"],
        "targetCPUUtilizationPercentage",
    ),
    "port out of range": (["--set", "networkPolicy.postgresql.ports[0]=70000"], "ports"),
    "pull policy": (["--set", "image.pullPolicy=Sometimes"], "pullPolicy"),
    "root uid": (["--set", "podSecurityContext.runAsUser=0"], "runAsUser"),
    "existing secret unnamed": (["--set", "secrets.source=existingSecret"], "existingSecret"),
    "KEDA without its connection": (["--set", "worker.keda.enabled=true"], "connectionSecret"),
    "secret in extraEnv": (
        ["--set", "config.extraEnv.ARMILLARY_ADMIN_PASSWORD=hunter2hunter2"],
        "ARMILLARY_ADMIN_PASSWORD",
    ),
    "in-process events": (["--set", "config.eventTransport=in_process"], "eventTransport"),
    "bad seccomp path": (["--set", "worker.seccomp.localhostProfile=../etc/x"], "localhostProfile"),
}


@pytest.mark.parametrize("case", BAD_VALUES, ids=list(BAD_VALUES))
def test_schema_rejects_bad_values(helm_env: dict[str, str], case: str) -> None:
    args, where = BAD_VALUES[case]
    result = helm(helm_env, "template", RELEASE, str(CHART), *args, check=False)
    assert result.returncode != 0, f"{case}: accepted"
    assert where in result.stderr, result.stderr


# --- security context ------------------------------------------------------------------------

INSTALLER = f"DaemonSet/{name('seccomp-installer')}"


def test_every_container_is_restricted(docs: list[dict[str, Any]]) -> None:
    checked = 0
    for where, spec in pod_specs(docs):
        pod = spec.get("securityContext", {})
        for container in spec.get("initContainers", []) + spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert set(container["resources"]["limits"]) >= {"cpu", "memory"}, where
            assert set(container["resources"]["requests"]) >= {"cpu", "memory"}, where
            if where != INSTALLER:  # root only to write the kubelet's directory
                assert context["runAsNonRoot"] is True, where
                assert pod["runAsNonRoot"] is True, where
                assert pod["runAsUser"] >= 10000, where
            checked += 1
    assert checked >= len(SERVICES) + 4  # the gateway, scheduler, worker and migrations


def test_pods_use_runtime_default_seccomp_except_the_worker(docs: list[dict[str, Any]]) -> None:
    worker = f"Deployment/{name('worker')}"
    for where, spec in pod_specs(docs):
        if where == worker:
            continue
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for container in spec["containers"]:
            profile = container["securityContext"].get("seccompProfile", {"type": "RuntimeDefault"})
            assert profile == {"type": "RuntimeDefault"}, where


def test_worker_exception_is_exactly_the_sandbox_one(docs: list[dict[str, Any]]) -> None:
    spec = of_kind(docs, "Deployment")[name("worker")]["spec"]["template"]["spec"]
    profile = {"type": "Localhost", "localhostProfile": "armillary/worker.json"}
    assert spec["hostUsers"] is False
    assert spec["securityContext"]["seccompProfile"] == profile
    assert spec["securityContext"]["runAsNonRoot"] is True
    (container,) = spec["containers"]
    context = container["securityContext"]
    assert context == {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "procMount": "Unmasked",
        "seccompProfile": profile,
    }


def test_seccomp_profile_adds_only_the_namespace_syscalls(
    default_docs: list[dict[str, Any]],
) -> None:
    text = (CHART / "files" / "worker-seccomp.json").read_text()
    profile = json.loads(text)
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    allowed = {
        syscall
        for rule in profile["syscalls"]
        if rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("args")
        for syscall in rule["names"]
    }
    sandbox = {"unshare", "clone", "mount", "umount2", "pivot_root", "setns"}
    assert sandbox <= allowed
    # Still refused, as under RuntimeDefault without capabilities.
    for dangerous in ("kexec_load", "init_module", "bpf", "perf_event_open", "reboot", "swapon"):
        assert dangerous not in allowed, dangerous
    # clone3 hides its flags from seccomp: ENOSYS makes the C library fall back to clone.
    assert {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38} in profile["syscalls"]
    # The installer ships this very file.
    installed = of_kind(default_docs, "ConfigMap")[name("seccomp-installer")]["data"]
    assert json.loads(installed["worker.json"]) == profile


def test_no_pod_shares_the_node_but_the_profile_installer(docs: list[dict[str, Any]]) -> None:
    for where, spec in pod_specs(docs):
        for field in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(field), (where, field)
        for container in spec["containers"]:
            assert not container["securityContext"].get("privileged"), where
        host_paths = [v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v]
        expected = ["/var/lib/kubelet/seccomp"] if where == INSTALLER else []
        assert host_paths == expected, where


def test_read_only_pods_get_an_empty_dir_for_tmp(docs: list[dict[str, Any]]) -> None:
    for where, spec in pod_specs(docs):
        if where == INSTALLER:
            continue
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        for container in spec["containers"]:
            (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert "emptyDir" in volumes[tmp["name"]], where


# --- probes, autoscaling, disruption budgets -------------------------------------------------


def test_api_services_probe_healthz_and_readyz(docs: list[dict[str, Any]]) -> None:
    deployments = of_kind(docs, "Deployment")
    for service, port in SERVICES.items():
        (container,) = deployments[name(service)]["spec"]["template"]["spec"]["containers"]
        assert container["args"][:2] == ["serve", service]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["http"] == port
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    (gateway,) = deployments[name("gateway")]["spec"]["template"]["spec"]["containers"]
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "stats"}


def test_only_the_services_that_load_models_run_the_full_image(
    docs: list[dict[str, Any]],
) -> None:
    """identity and tracking run the lean `control` image (ADR 0042)."""
    deployments = of_kind(docs, "Deployment")
    for service in SERVICES:
        (container,) = deployments[name(service)]["spec"]["template"]["spec"]["containers"]
        repository = container["image"].rsplit(":", 1)[0]
        lean = service in {"identity", "tracking"}
        assert repository.endswith("-control" if lean else "-api"), (service, repository)
    (gateway,) = deployments[name("gateway")]["spec"]["template"]["spec"]["containers"]
    assert gateway["image"].rsplit(":", 1)[0].endswith("-control")


def test_envoy_runs_one_worker_thread_per_cpu_of_its_limit(docs: list[dict[str, Any]]) -> None:
    """Envoy counts the node's cores, not the pod's CPU limit (ADR 0035)."""
    deployments = of_kind(docs, "Deployment")
    (gateway,) = deployments[name("gateway")]["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item.get("value") for item in gateway["env"]}
    cpu = str(gateway["resources"]["limits"]["cpu"])
    cores = int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    assert int(env["ARMILLARY_GATEWAY_CONCURRENCY"]) == math.ceil(cores)


def test_cpu_autoscalers_target_their_own_deployments(docs: list[dict[str, Any]]) -> None:
    autoscalers = of_kind(docs, "HorizontalPodAutoscaler")
    deployments = of_kind(docs, "Deployment")
    assert set(autoscalers) == {name(c) for c in [*SERVICES, "gateway", "console"]}
    for hpa_name, hpa in autoscalers.items():
        target = hpa["spec"]["scaleTargetRef"]
        assert target == {"apiVersion": "apps/v1", "kind": "Deployment", "name": hpa_name}
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert 0 < metric["resource"]["target"]["averageUtilization"] <= 100
        # The HPA owns the replica count; a fixed one would fight it on every upgrade.
        assert "replicas" not in deployments[hpa_name]["spec"]


def test_keda_scales_workers_on_queue_depth_only_when_enabled(
    default_docs: list[dict[str, Any]], full_docs: list[dict[str, Any]]
) -> None:
    assert not of_kind(default_docs, "ScaledObject")
    assert of_kind(default_docs, "Deployment")[name("worker")]["spec"]["replicas"] == 2
    scaled = of_kind(full_docs, "ScaledObject")[name("worker")]["spec"]
    assert scaled["scaleTargetRef"]["name"] == name("worker")
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "postgresql"
    assert "status = 'queued'" in trigger["metadata"]["query"]
    assert "workflows_task_runs" in trigger["metadata"]["query"]
    assert "replicas" not in of_kind(full_docs, "Deployment")[name("worker")]["spec"]


def test_every_deployment_has_a_disruption_budget(docs: list[dict[str, Any]]) -> None:
    budgets = of_kind(docs, "PodDisruptionBudget")
    for deployment_name, deployment in of_kind(docs, "Deployment").items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert budgets[deployment_name]["spec"]["selector"]["matchLabels"] == selector


# --- migrations, secrets, service accounts ---------------------------------------------------


def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook(docs: list[dict[str, Any]]) -> None:
    job = of_kind(docs, "Job")[name("migrations")]
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["db", "upgrade"]
    account = of_kind(docs, "ServiceAccount")[job["spec"]["template"]["spec"]["serviceAccountName"]]
    # What the Job needs exists before it: hooks with a lower weight.
    assert account["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    job_weight = int(annotations["helm.sh/hook-weight"])
    assert int(account["metadata"]["annotations"]["helm.sh/hook-weight"]) < job_weight
    secret = of_kind(docs, "ExternalSecret")[name("migrations")]
    assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < job_weight


# The secret settings (kit/secret_sources.py SECRET_FIELDS and docs/operations.md).
SECRET_SETTINGS = {
    "ARMILLARY_SECRET_KEY",
    "ARMILLARY_PREVIOUS_SECRET_KEYS",
    "ARMILLARY_ADMIN_PASSWORD",
    "ARMILLARY_DATABASE_URL",
    "ARMILLARY_DATABASE_PASSWORD",
    "ARMILLARY_REDIS_URL",
    "ARMILLARY_RABBITMQ_URL",
    "ARMILLARY_SERVICE_KEY",
    "ARMILLARY_STORAGE_S3_ACCESS_KEY_ID",
    "ARMILLARY_STORAGE_S3_SECRET_ACCESS_KEY",
}


def test_no_secret_value_is_rendered(docs: list[dict[str, Any]]) -> None:
    assert not of_kind(docs, "Secret"), "the chart must never write a Secret's data"
    plain = [name for cm in of_kind(docs, "ConfigMap").values() for name in cm.get("data") or {}]
    files = []
    for where, spec in pod_specs(docs):
        for container in spec["containers"]:
            for variable in container.get("env", []):
                assert variable["name"] not in SECRET_SETTINGS, (where, variable)
                if variable["name"].removesuffix("_FILE") in SECRET_SETTINGS:
                    assert variable["value"].startswith("/var/run/armillary/"), where
                    files.append(variable["name"])
    assert not SECRET_SETTINGS & set(plain)
    assert "ARMILLARY_SECRET_KEY_FILE" in files
    assert "ARMILLARY_SERVICE_KEY_FILE" in files
    assert "PRIVATE KEY" not in yaml.safe_dump_all(docs)


def test_external_secrets_feed_every_pod_that_reads_secrets(docs: list[dict[str, Any]]) -> None:
    external = of_kind(docs, "ExternalSecret")
    for where, spec in pod_specs(docs):
        for volume in spec["volumes"]:
            if "secret" in volume:
                assert volume["secret"]["secretName"] in external, (where, volume)
    # Each service's key reaches that service only (the workflows key: its engine too).
    deployments = of_kind(docs, "Deployment")
    for component in [*SERVICES, "scheduler", "worker"]:
        volumes = deployments[name(component)]["spec"]["template"]["spec"]["volumes"]
        keys = [v["secret"]["secretName"] for v in volumes if v["name"] == "service-key"]
        owner = component if component in SERVICES else "workflows"
        assert keys == [f"{name(owner)}-key"], component


def test_every_database_client_verifies_against_the_given_ca(
    full_docs: list[dict[str, Any]],
) -> None:
    clients = 0
    for where, spec in pod_specs(full_docs):
        (container,) = spec["containers"]
        env = {v["name"]: v.get("value") for v in container.get("env", [])}
        if "ARMILLARY_DATABASE_URL_FILE" not in env:
            continue
        clients += 1
        assert env["ARMILLARY_DATABASE_CA_FILE"] == "/etc/armillary/database-ca/ca.pem", where
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["database-ca"]["configMap"]["name"] == "rds-ca-bundle", where
    assert clients == len(SERVICES) + 3  # the services, scheduler, worker and migrations


def test_existing_secrets_replace_external_secrets(helm_env: dict[str, str]) -> None:
    docs = documents(
        render(helm_env, "--set", "secrets.source=existingSecret,secrets.existingSecret=mine")
    )
    assert not of_kind(docs, "ExternalSecret")
    job = of_kind(docs, "Job")[name("migrations")]["spec"]["template"]["spec"]
    assert {"name": "secrets", "secret": {"secretName": "mine", "defaultMode": 0o440}} in job[
        "volumes"
    ]


def test_service_accounts_carry_irsa_annotations(full_docs: list[dict[str, Any]]) -> None:
    accounts = of_kind(full_docs, "ServiceAccount")
    role = accounts[name("data")]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert role.endswith(":role/armillary-data")
    assert "annotations" not in accounts[name("identity")]["metadata"]
    for where, spec in pod_specs(full_docs):
        if where != INSTALLER:
            assert spec["serviceAccountName"] in accounts, where
            assert spec["automountServiceAccountToken"] is False, where


# --- network policies ------------------------------------------------------------------------


def policy_peers(rule: dict[str, Any]) -> list[str]:
    """The components a rule's peers select (or the raw peer when it is not one of ours)."""
    peers = []
    for peer in rule.get("from", rule.get("to", [])):
        labels = peer.get("podSelector", {}).get("matchLabels", {})
        peers.append(labels.get("app.kubernetes.io/component") or json.dumps(peer, sort_keys=True))
    return peers


def test_network_policies_deny_by_default(docs: list[dict[str, Any]]) -> None:
    deny = of_kind(docs, "NetworkPolicy")[f"{RELEASE}-armillary-default-deny"]["spec"]
    assert deny["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny
    assert "egress" not in deny
    selector = deny["podSelector"]["matchLabels"]
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] not in {"Deployment", "Job"}:
            continue  # the seccomp installer is never called and calls nothing
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), where


def test_only_the_gateway_takes_ingress_from_outside(full_docs: list[dict[str, Any]]) -> None:
    policies = of_kind(full_docs, "NetworkPolicy")
    prometheus = json.dumps(
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
        sort_keys=True,
    )
    ours = {*SERVICES, "gateway", "scheduler", "worker"}
    for policy_name, policy in policies.items():
        for rule in policy["spec"].get("ingress", []):
            assert "from" in rule or policy_name == name("gateway"), policy_name
            outside = [p for p in policy_peers(rule) if p not in ours and p != prometheus]
            assert not outside or policy_name == name("gateway"), (policy_name, outside)
    gateway_rules = policies[name("gateway")]["spec"]["ingress"]
    (public,) = [rule for rule in gateway_rules if "ingress-nginx" in str(rule)]
    assert public["ports"] == [{"protocol": "TCP", "port": 8000}]


@pytest.mark.parametrize(
    ("component", "callers"),
    [
        (
            "identity",
            {
                "gateway",
                "data",
                "workflows",
                "registry",
                "serving",
                "tracking",
                "scheduler",
                "worker",
            },
        ),
        ("data", {"gateway", "workflows", "registry", "scheduler", "worker"}),
        ("workflows", {"gateway", "registry"}),
        ("registry", {"gateway", "serving", "tracking"}),
        ("serving", {"gateway"}),
        ("tracking", {"gateway"}),
    ],
)
def test_services_are_reached_only_by_their_callers(
    default_docs: list[dict[str, Any]], component: str, callers: set[str]
) -> None:
    spec = of_kind(default_docs, "NetworkPolicy")[name(component)]["spec"]
    http = [r for r in spec["ingress"] if r["ports"][0]["port"] == SERVICES[component]]
    (rule,) = http
    assert set(policy_peers(rule)) == callers


def test_the_chart_runs_every_service_of_the_code(docs: list[dict[str, Any]]) -> None:
    assert set(SERVICES) >= {"identity", "data", "workflows", "registry", "serving", "tracking"}
    deployments = of_kind(docs, "Deployment")
    services = of_kind(docs, "Service")
    config = of_kind(docs, "ConfigMap")[f"{RELEASE}-armillary-config"]["data"]
    accounts = of_kind(docs, "ServiceAccount")
    for service, port in SERVICES.items():
        assert name(service) in deployments, service
        assert {p["port"] for p in services[name(service)]["spec"]["ports"]} == {port, 9464}
        # The gateway and the other services find it (ARMILLARY_<SERVICE>_URL).
        assert config[f"ARMILLARY_{service.upper()}_URL"] == f"http://{name(service)}:{port}"
        assert name(service) in accounts, service


def test_every_service_key_is_synced_from_secrets_manager(docs: list[dict[str, Any]]) -> None:
    external = of_kind(docs, "ExternalSecret")
    for service in SERVICES:
        secret = external[f"{name(service)}-key"]["spec"]
        assert secret["data"][0]["remoteRef"] == {"key": f"armillary/service-keys/{service}"}


def test_tracking_reaches_identity_and_the_stores_and_the_gateway_reaches_it(
    default_docs: list[dict[str, Any]],
) -> None:
    """Tracking verifies tokens against identity's keys and asks it for permissions, and maps
    MLflow's registry API onto the registry's; its run artifacts go to the object store (ADR
    0037). Only the gateway calls it (`/mlflow`)."""
    policies = of_kind(default_docs, "NetworkPolicy")
    spec = policies[name("tracking")]["spec"]
    reached = {peer for rule in spec["egress"] for peer in policy_peers(rule)}
    assert {p for p in reached if not p.startswith("{")} == {"identity", "registry"}
    ports = {port["port"] for rule in spec["egress"] for port in rule["ports"]}
    assert ports == {8101, 8104, 5432, 6379, 5671, 443}
    gateway = policies[name("gateway")]["spec"]["egress"]
    to_tracking = [rule for rule in gateway if policy_peers(rule) == ["tracking"]]
    assert [rule["ports"] for rule in to_tracking] == [[{"protocol": "TCP", "port": 8106}]]


def test_workers_reach_only_the_gateway_identity_data_and_the_stores(
    default_docs: list[dict[str, Any]],
) -> None:
    spec = of_kind(default_docs, "NetworkPolicy")[name("worker")]["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in spec
    reached = {peer for rule in spec["egress"] for peer in policy_peers(rule)}
    ours = {p for p in reached if not p.startswith("{")}
    assert ours == {"gateway", "identity", "data"}
    ports = {port["port"] for rule in spec["egress"] for port in rule["ports"]}
    assert ports == {8000, 8101, 8102, 5432, 6379, 5671, 443}


def test_the_console_sits_behind_the_gateway_with_no_secret(docs: list[dict[str, Any]]) -> None:
    """The web console (issue 19): the gateway routes `/` and `/ui` to its Service, and its
    pages call the API back through the gateway's. It mounts no secret or service key, and
    the network lets the gateway alone reach it and it reach the gateway alone."""
    deployments = of_kind(docs, "Deployment")
    pod = deployments[name("console")]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][:2] == ["serve", "console"]
    assert container["image"].rsplit(":", 1)[0].endswith("-control")  # the lean image
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["ARMILLARY_CONSOLE_API_URL"] == f"http://{name('gateway')}:80"
    assert not [v for v in pod["volumes"] if "secret" in v], pod["volumes"]
    assert not [n for n in env if n.endswith("_FILE")], env
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    service = of_kind(docs, "Service")[name("console")]
    assert {p["port"] for p in service["spec"]["ports"]} == {CONSOLE_PORT, 9464}
    (gateway,) = deployments[name("gateway")]["spec"]["template"]["spec"]["containers"]
    gateway_env = {item["name"]: item.get("value") for item in gateway["env"]}
    assert gateway_env["ARMILLARY_CONSOLE_URL"] == f"http://{name('console')}:{CONSOLE_PORT}"
    assert name("console") in of_kind(docs, "ServiceAccount")
    policies = of_kind(docs, "NetworkPolicy")
    spec = policies[name("console")]["spec"]
    (from_gateway,) = [r for r in spec["ingress"] if r["ports"][0]["port"] == CONSOLE_PORT]
    assert policy_peers(from_gateway) == ["gateway"]
    assert [policy_peers(rule) for rule in spec["egress"]] == [["gateway"]]
    assert spec["egress"][0]["ports"] == [{"protocol": "TCP", "port": 8000}]
    gateway_policy = policies[name("gateway")]["spec"]
    to_console = [r for r in gateway_policy["egress"] if policy_peers(r) == ["console"]]
    assert [r["ports"] for r in to_console] == [[{"protocol": "TCP", "port": CONSOLE_PORT}]]
    callers = {p for r in gateway_policy["ingress"] for p in policy_peers(r)}
    assert "console" in callers


# --- edge and monitoring ---------------------------------------------------------------------


def test_ingress_has_tls_from_cert_manager(full_docs: list[dict[str, Any]]) -> None:
    ingress = of_kind(full_docs, "Ingress")[f"{RELEASE}-armillary"]
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"]
    (tls,) = ingress["spec"]["tls"]
    assert tls["hosts"] == ["armillary.example.com"]
    assert tls["secretName"]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == name("gateway")


def test_monitoring_resources_follow_their_values(
    default_docs: list[dict[str, Any]], full_docs: list[dict[str, Any]]
) -> None:
    assert not of_kind(default_docs, "ServiceMonitor")
    assert not of_kind(default_docs, "PrometheusRule")
    monitor = of_kind(full_docs, "ServiceMonitor")[f"{RELEASE}-armillary"]["spec"]
    assert {e["port"] for e in monitor["endpoints"]} == {"metrics", "stats"}
    # The PrometheusRule is the rule files of deploy/prometheus/rules, nothing more or less.
    groups = of_kind(full_docs, "PrometheusRule")[f"{RELEASE}-armillary"]["spec"]["groups"]
    sources = sorted((DEPLOY / "prometheus" / "rules").glob("*.rules.yml"))
    assert sources
    assert groups == [g for path in sources for g in yaml.safe_load(path.read_text())["groups"]]


def sync_chart_rules() -> Any:
    path = DEPLOY / "prometheus" / "sync_chart_rules.py"
    spec = importlib.util.spec_from_file_location("sync_chart_rules", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_charts_rule_files_are_copies_of_the_source() -> None:
    sync = sync_chart_rules()
    assert sync.stale() == [], (
        "deploy/helm/armillary/files/prometheus-rules differs from deploy/prometheus/rules: "
        "run `.venv/bin/python deploy/prometheus/sync_chart_rules.py`"
    )


def test_a_stale_chart_copy_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sync = sync_chart_rules()
    copy = tmp_path / "copy"
    shutil.copytree(sync.CHART_COPY, copy)
    monkeypatch.setattr(sync, "CHART_COPY", copy)
    assert sync.stale() == []
    [rules] = copy.glob("*.rules.yml")
    rules.write_text(rules.read_text().replace("for: 5m", "for: 50m", 1))
    assert sync.stale() == [rules.name]
    assert sync.main(["--check"]) == 1
    sync.sync()
    assert sync.stale() == []


# --- checkov ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkov_failures(default_manifest: str, full_manifest: str, tmp_path_factory: Any) -> set:
    folder = tmp_path_factory.mktemp("rendered")
    files = []
    for variant, manifest in (("default", default_manifest), ("full", full_manifest)):
        path = folder / f"{variant}.yaml"
        path.write_text(manifest)
        files += ["-f", str(path)]
    reports = checkov_reports(
        *files, "--framework", "kubernetes", "--skip-check", ",".join(CHECKOV_SKIPS)
    )
    return {
        (check["check_id"], check["resource"])
        for part in reports
        for check in part.get("results", {}).get("failed_checks", [])
    }


def test_checkov_finds_nothing_beyond_the_justified_exceptions(checkov_failures: set) -> None:
    unexpected = checkov_failures - set(CHECKOV_EXCEPTIONS)
    assert not unexpected, sorted(unexpected)
    # An exception that no longer fires is stale: remove it rather than keep a blanket excuse.
    assert set(CHECKOV_EXCEPTIONS) <= checkov_failures


def test_security_profiles_operator_path_replaces_the_installer(helm_env: dict[str, str]) -> None:
    profile = "operator/armillary/armillary-worker.json"
    docs = documents(
        render(
            helm_env,
            "--set",
            f"worker.seccomp.installer=none,worker.seccomp.localhostProfile={profile}",
        )
    )
    assert not of_kind(docs, "DaemonSet")
    spec = of_kind(docs, "Deployment")[name("worker")]["spec"]["template"]["spec"]
    assert spec["securityContext"]["seccompProfile"]["localhostProfile"] == profile


def test_scheduled_backups_are_off_by_default(default_docs: list[dict[str, Any]]) -> None:
    assert not of_kind(default_docs, "CronJob")


def test_scheduled_backups_run_full_diff_and_the_object_copy(
    full_docs: list[dict[str, Any]],
) -> None:
    jobs = of_kind(full_docs, "CronJob")
    assert set(jobs) == {name("backup-full"), name("backup-diff"), name("backup-objects")}
    for job in jobs.values():
        assert job["spec"]["concurrencyPolicy"] == "Forbid"
        pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == name("backup")
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            # No secret in the environment: the cipher pass is a file from the Secret.
            names = [e["name"] for e in container.get("env", [])]
            assert not [n for n in names if "PASS" in n and not n.endswith("_FILE")]
    full = jobs[name("backup-full")]["spec"]
    container = full["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][-2:] == ["backup", "--type=full"]
    assert full["schedule"] == "0 1 * * 0"
    diff = jobs[name("backup-diff")]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert diff["containers"][0]["args"][-1] == "--type=diff"
    assert "--config-path=/etc/pgbackrest" in container["args"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["config"] == "/etc/pgbackrest/pgbackrest.conf"
    assert mounts["secrets"] == "/etc/pgbackrest/conf.d"
    volumes = full["jobTemplate"]["spec"]["template"]["spec"]["volumes"]
    secrets = next(v for v in volumes if v["name"] == "secrets")["secret"]
    assert secrets["secretName"] == "armillary-pgbackrest"
    assert secrets["items"] == [{"key": "secrets.conf", "path": "secrets.conf"}]
    objects = jobs[name("backup-objects")]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    sync = objects["containers"][0]
    assert sync["args"] == ["backup", "objects-sync"]
    env = {e["name"]: e.get("value") for e in sync["env"]}
    assert env["ARMILLARY_STORAGE_BACKUP_BUCKET"] == "armillary-prod-datasets-backup"
    assert env["ARMILLARY_STORAGE_BACKUP_REGION"] == "eu-west-1"
    config = of_kind(full_docs, "ConfigMap")[name("backup-pgbackrest")]
    assert "pg1-host-type=tls" in config["data"]["pgbackrest.conf"]
    policy = of_kind(full_docs, "NetworkPolicy")[name("backup")]
    ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert ports == {443, 8432}


def test_a_pgbackrest_schedule_needs_its_image_config_and_secret(
    helm_env: dict[str, str],
) -> None:
    failed = helm(
        helm_env,
        "template",
        RELEASE,
        str(CHART),
        "--set",
        "backup.pgbackrest.enabled=true",
        check=False,
    )
    assert failed.returncode != 0
    assert "backup/pgbackrest/image" in failed.stderr
