"""Terraform for AWS (deploy/terraform), checked statically: no terraform binary or provider
registry is reachable here, so the files are parsed with python-hcl2 and scanned by checkov.
Each test asserts a property of the configuration as written, so it fails when the property
is lost (a flag flipped, a validation dropped, a dataset grant added to the wrong role)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from armillary.kit.settings import SERVICE_PORTS
from armillary.kit.storage.admin import (
    RULE_ABORT_MULTIPART,
    RULE_EXPIRE_NONCURRENT,
    RULE_PROCESSED_TO_IA,
)
from tests.deploy.conftest import checkov_reports
from tests.deploy.terraform_config import TERRAFORM, Config, one, parse

MODULES = TERRAFORM / "modules"
EXAMPLE = TERRAFORM / "examples" / "complete"
MODULE_NAMES = {
    "kms",
    "network",
    "eks",
    "rds",
    "elasticache",
    "mq",
    "s3",
    "ecr",
    "secrets",
    "iam",
    "observability",
    "backup",
    "ecs",
}
# Inputs that must carry a `validation` block: (module directory, variable).
VALIDATED = [
    ("network", "availability_zones"),
    ("network", "cidr_block"),
    ("eks", "node_groups"),
    ("eks", "api_allowed_cidrs"),
    ("rds", "backup_retention_days"),
    ("rds", "engine_major_version"),
    ("rds", "kms_key_arn"),
    ("elasticache", "auth_token"),
    ("elasticache", "num_cache_clusters"),
    ("mq", "password"),
    ("mq", "instance_type"),
    ("s3", "bucket_name"),
    ("s3", "processed_to_ia_days"),
    ("ecr", "repositories"),
    ("secrets", "database_rotation_days"),
    ("iam", "bucket_arn"),
    ("iam", "oidc_provider_arn"),
    ("observability", "log_retention_days"),
    ("observability", "prometheus_metrics_namespace"),
    ("observability", "slo_services"),
    ("observability", "availability_objective"),
    ("observability", "queue_age_threshold_seconds"),
    ("observability", "min_live_workers"),
    ("observability", "outbox_lag_threshold_seconds"),
    ("observability", "object_store_free_ratio_threshold"),
    ("backup", "continuous_retention_days"),
    ("ecs", "image_tag"),
    ("ecs", "sizes"),
    ("examples/complete", "name"),
    ("examples/complete", "region"),
    ("examples/complete", "bucket_name"),
]
# Names of inputs that carry a secret: they must be sensitive and have no default.
SECRET_NAME = re.compile(r"password|auth_token|secret_key|private_key|(^|_)token$")
# Every inline `#checkov:skip` in deploy/terraform, with the reason it is acceptable.
JUSTIFIED_SKIPS = {
    "CKV_AWS_109": "KMS key policy: Resource '*' in a key policy means the key itself",
    "CKV_AWS_111": "KMS key policy: Resource '*' in a key policy means the key itself",
    "CKV_AWS_356": "KMS key policy: Resource '*' in a key policy means the key itself",
    "CKV2_AWS_62": "no consumer of S3 event notifications; the platform records its own writes",
    "CKV_AWS_144": "recovery is AWS Backup's (optional cross-region copy), not bucket replication",
    "CKV_AWS_145": "S3 server access logs can only be delivered to an SSE-S3 bucket",
    "CKV2_AWS_57": "only the database secret can rotate by Lambda; the secret key and service "
    "keys rotate in two phases by hand (docs/operations.md)",
    "CKV_AWS_209": "Amazon MQ for RabbitMQ encrypts at rest with an AWS-owned key only",
    "CKV2_AWS_5": "the rotation Lambda's security group is attached through the SAR stack's "
    "parameters, which checkov cannot follow",
}


@pytest.fixture(scope="module")
def config() -> Config:
    files = sorted(TERRAFORM.rglob("*.tf"))
    assert files, "no Terraform under deploy/terraform"
    parsed = parse(files)
    assert set(parsed) == {path.resolve() for path in files}, "some .tf files did not parse"
    return Config(parsed)


@pytest.fixture(scope="module")
def checkov() -> dict:
    [report] = checkov_reports("-d", str(TERRAFORM), "--framework", "terraform")
    return report


def test_every_module_exists_with_pinned_providers(config: Config) -> None:
    assert {path.name for path in config.modules() if path.parent == MODULES} == MODULE_NAMES
    for module in [*(MODULES / name for name in MODULE_NAMES), EXAMPLE]:
        (terraform,) = [block for _, block in config.blocks("terraform", module)]
        assert terraform["required_version"].startswith(">="), module
        providers = one(terraform["required_providers"])
        assert providers["aws"]["source"] == "hashicorp/aws", module
        # A lower and an upper bound: a new major provider never arrives unreviewed.
        assert re.fullmatch(r">= [\d.]+, < [\d.]+", providers["aws"]["version"]), module


def test_every_variable_has_a_description_and_a_type(config: Config) -> None:
    variables = list(config.variables())
    assert len(variables) > 50
    for module, name, body in variables:
        assert body.get("description", "").strip(), f"{module.name}: {name} has no description"
        assert body.get("type"), f"{module.name}: {name} has no type"


def test_secret_variables_are_sensitive_and_have_no_default(config: Config) -> None:
    secrets = [(m.name, n, b) for m, n, b in config.variables() if SECRET_NAME.search(n)]
    assert {(m, n) for m, n, _ in secrets} >= {
        ("elasticache", "auth_token"),
        ("mq", "password"),
        ("secrets", "redis_auth_token"),
        ("secrets", "rabbitmq_password"),
    }
    for module, name, body in secrets:
        assert body.get("sensitive") is True, f"{module}: {name} is not sensitive"
    for module, name, body in config.variables():
        if body.get("sensitive") is True:
            assert "default" not in body, f"{module.name}: secret {name} has a default"


@pytest.mark.parametrize(("module", "name"), VALIDATED)
def test_inputs_are_validated(config: Config, module: str, name: str) -> None:
    directory = TERRAFORM / module if module.startswith("examples") else MODULES / module
    validations = config.variable(directory, name).get("validation", [])
    assert validations, f"{module}: {name} has no validation block"
    for validation in validations:
        assert f"var.{name}" in validation["condition"]
        assert validation["error_message"].strip()


def test_every_output_has_a_description(config: Config) -> None:
    outputs = [(m, b) for m, block in config.blocks("output") for b in block.items()]
    assert len(outputs) > 30
    for module, (name, body) in outputs:
        assert body.get("description", "").strip(), f"{module.name}: output {name}"


def test_rds_is_multi_az_encrypted_backed_up_and_protected(config: Config) -> None:
    rds = MODULES / "rds"
    db = config.resource(rds, "aws_db_instance", "this")
    assert db["multi_az"] is True
    assert db["storage_encrypted"] is True
    assert db["kms_key_id"] == "${var.kms_key_arn}"
    assert db["deletion_protection"] is True
    assert db["publicly_accessible"] is False
    # Automated backups are what point-in-time restore replays.
    assert config.resolved_number(rds, db["backup_retention_period"]) >= 7
    retention = config.variable(rds, "backup_retention_days")["validation"][0]["condition"]
    assert ">= 7" in retention
    # RDS generates and rotates the master password: it never passes through Terraform.
    assert db["manage_master_user_password"] is True
    assert "password" not in db


def test_rds_parameter_group_forces_tls(config: Config) -> None:
    rds = MODULES / "rds"
    group = config.resource(rds, "aws_db_parameter_group", "this")
    parameters = {p["name"]: p["value"] for p in group["parameter"]}
    assert parameters["rds.force_ssl"] == "1"
    db = config.resource(rds, "aws_db_instance", "this")
    assert db["parameter_group_name"] == "${aws_db_parameter_group.this.name}"


def test_s3_bucket_is_versioned_kms_encrypted_private_and_logged(config: Config) -> None:
    s3 = MODULES / "s3"
    versioning = config.resource(s3, "aws_s3_bucket_versioning", "data")
    assert one(versioning["versioning_configuration"])["status"] == "Enabled"
    sse = config.resource(s3, "aws_s3_bucket_server_side_encryption_configuration", "data")
    default = one(one(sse["rule"])["apply_server_side_encryption_by_default"])
    assert default == {"sse_algorithm": "aws:kms", "kms_master_key_id": "${var.kms_key_arn}"}
    block = config.resource(s3, "aws_s3_bucket_public_access_block", "data")
    flags = ["block_public_acls", "block_public_policy", "ignore_public_acls"]
    assert all(block[flag] is True for flag in [*flags, "restrict_public_buckets"])
    logging = config.resource(s3, "aws_s3_bucket_logging", "data")
    assert logging["bucket"] == "${aws_s3_bucket.data.id}"
    assert logging["target_bucket"] == "${aws_s3_bucket.access_logs.id}"


def test_s3_lifecycle_is_the_one_storage_init_writes(config: Config) -> None:
    s3 = MODULES / "s3"
    lifecycle = config.resource(s3, "aws_s3_bucket_lifecycle_configuration", "data")
    rules = {rule["id"]: rule for rule in lifecycle["rule"]}
    # The same ids as kit/storage/admin.py, so `armillary storage init` replaces, not adds.
    assert set(rules) == {RULE_PROCESSED_TO_IA, RULE_EXPIRE_NONCURRENT, RULE_ABORT_MULTIPART}
    assert one(rules[RULE_PROCESSED_TO_IA]["transition"])["storage_class"] == "STANDARD_IA"
    assert one(one(rules[RULE_PROCESSED_TO_IA]["filter"])["tag"]) == {
        "key": "armillary-class",
        "value": "processed",
    }
    assert config.resolved_number(s3, one(rules[RULE_PROCESSED_TO_IA]["transition"])["days"]) == 30
    expire = one(rules[RULE_EXPIRE_NONCURRENT]["noncurrent_version_expiration"])
    assert config.resolved_number(s3, expire["noncurrent_days"]) == 90
    abort = one(rules[RULE_ABORT_MULTIPART]["abort_incomplete_multipart_upload"])
    assert config.resolved_number(s3, abort["days_after_initiation"]) == 7


def test_elasticache_has_tls_auth_and_multi_az(config: Config) -> None:
    redis = config.resource(MODULES / "elasticache", "aws_elasticache_replication_group", "this")
    assert redis["transit_encryption_enabled"] is True
    assert redis["auth_token"] == "${var.auth_token}"
    assert redis["at_rest_encryption_enabled"] is True
    assert redis["multi_az_enabled"] is True
    assert redis["automatic_failover_enabled"] is True


def test_mq_is_a_private_multi_az_rabbitmq_cluster(config: Config) -> None:
    broker = config.resource(MODULES / "mq", "aws_mq_broker", "this")
    assert broker["engine_type"] == "RabbitMQ"
    assert broker["deployment_mode"] == "CLUSTER_MULTI_AZ"
    assert broker["publicly_accessible"] is False
    assert broker["auto_minor_version_upgrade"] is True
    assert one(broker["logs"])["general"] is True


def test_ecr_scans_on_push_with_immutable_tags(config: Config) -> None:
    repository = config.resource(MODULES / "ecr", "aws_ecr_repository", "this")
    assert one(repository["image_scanning_configuration"])["scan_on_push"] is True
    assert repository["image_tag_mutability"] == "IMMUTABLE"


def test_database_secret_rotates(config: Config) -> None:
    secrets = MODULES / "secrets"
    rotation = config.resource(secrets, "aws_secretsmanager_secret_rotation", "database")
    assert rotation["secret_id"] == '${aws_secretsmanager_secret.this["database"].id}'
    assert "RotationLambdaARN" in rotation["rotation_lambda_arn"]
    days = one(rotation["rotation_rules"])["automatically_after_days"]
    assert 0 < config.resolved_number(secrets, days) <= 90


def _policy(config: Config, name: str) -> str:
    body = config.labelled("data", "aws_iam_policy_document", name, MODULES / "iam")
    return json.dumps(body)


def test_only_data_and_workers_touch_datasets(config: Config) -> None:
    datasets = "local.prefixes.datasets"
    for process in ["data", "worker"]:
        assert datasets in _policy(config, process), process
    others = ["base", "identity", "workflows", "registry", "serving", "tracking", "scheduler"]
    for process in others:
        assert "datasets" not in _policy(config, process), f"{process} reaches datasets"
    assert "datasets" not in _policy(config, "sagemaker_execution")


def test_only_workers_may_pass_the_sagemaker_role(config: Config) -> None:
    worker = _policy(config, "worker")
    assert "iam:PassRole" in worker
    assert "aws_iam_role.sagemaker_execution.arn" in worker
    assert "sagemaker.amazonaws.com" in worker
    processes = ["base", "identity", "data", "workflows", "registry", "serving", "tracking"]
    for process in [*processes, "scheduler"]:
        policy = _policy(config, process)
        assert "PassRole" not in policy, process
        assert "sagemaker:" not in policy, process


def _locals(config: Config, module: Path) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for _, block in config.blocks("locals", module):
        merged.update(block)
    return merged


def test_tracking_touches_run_artifacts_only(config: Config) -> None:
    """Tracking stores run artifacts under projects/*/runs/* (ADR 0037); the registry only
    reads them, and no other role names that prefix."""
    prefixes = _locals(config, MODULES / "iam")["prefixes"]
    assert prefixes["runs"] == "projects/*/runs/*"
    tracking = json.loads(_policy(config, "tracking"))
    resources = [
        resource
        for statement in tracking["statement"]
        for resource in (statement["resources"] if isinstance(statement["resources"], list)
                         else [statement["resources"]])
    ]  # fmt: skip
    objects = {r for r in resources if r != "${var.bucket_arn}"}
    assert objects == {"${var.bucket_arn}/${local.prefixes.runs}"}
    (listing,) = [s for s in tracking["statement"] if s["sid"] == "ListRunArtifacts"]
    assert one(listing["condition"])["values"] == ["${local.prefixes.runs}"]
    # The registry reads a run's model file when MLflow's client registers it (decision 10).
    registry = json.loads(_policy(config, "registry"))
    (reading,) = [s for s in registry["statement"] if s["sid"] == "ReadRunArtifacts"]
    assert reading["resources"] == ["${var.bucket_arn}/${local.prefixes.runs}"]
    assert reading["actions"] == "${local.read}", reading
    for process in ["base", "identity", "data", "workflows", "serving", "worker"]:
        assert "prefixes.runs" not in _policy(config, process), process


def test_every_service_gets_a_role_a_key_a_log_group_and_an_alarm(config: Config) -> None:
    services = set(SERVICE_PORTS)
    assert "tracking" in services
    iam = _locals(config, MODULES / "iam")
    assert services <= set(iam["policies"])
    assert services <= set(iam["service_key"])
    key_services = config.variable(MODULES / "secrets", "services")["default"]
    assert services <= set(key_services)
    observability = MODULES / "observability"
    assert services <= set(config.variable(observability, "slo_services")["default"])
    assert services <= set(config.variable(observability, "processes")["default"])
    example = _locals(config, EXAMPLE)["processes"]
    assert services <= set(example)


def test_ecs_runs_every_service_on_its_port(config: Config) -> None:
    ecs = MODULES / "ecs"
    found = _locals(config, ecs)
    for service, port in SERVICE_PORTS.items():
        task = found["services"][service]
        assert task["command"][:2] == ["serve", service], service
        assert task["port"] == port, service
        assert found["service_key_of"][service] == service
        assert found["health_url"][service] == f"http://127.0.0.1:{port}/healthz"
        assert service in config.variable(ecs, "sizes")["default"], service
    # Service to service: the security group's range covers every service port.
    for kind in ("ingress", "egress"):
        rule = config.resource(ecs, f"aws_vpc_security_group_{kind}_rule", "between_tasks")
        assert rule["from_port"] == min(SERVICE_PORTS.values())
        assert rule["to_port"] == max(SERVICE_PORTS.values())


def test_irsa_trust_names_one_service_account(config: Config) -> None:
    trust = one(config.labelled("data", "aws_iam_policy_document", "irsa", MODULES / "iam"))
    conditions = {c["variable"]: c for c in one(trust["statement"])["condition"]}
    assert conditions["${var.oidc_issuer}:sub"]["test"] == "StringEquals"
    assert conditions["${var.oidc_issuer}:sub"]["values"] == [
        "system:serviceaccount:${var.namespace}:${var.service_account_prefix}-${each.key}"
    ]
    assert conditions["${var.oidc_issuer}:aud"]["values"] == ["sts.amazonaws.com"]


def test_example_calls_every_module_with_declared_inputs(config: Config) -> None:
    calls = {
        name: body for _, block in config.blocks("module", EXAMPLE) for name, body in block.items()
    }
    used = set()
    for name, call in calls.items():
        source = (EXAMPLE / call["source"]).resolve()
        assert source.parent == MODULES.resolve(), f"{name}: {source}"
        assert source.is_dir(), f"{name}: {source}"
        used.add(source.name)
        declared = {n: body for _, n, body in config.variables(source)}
        meta = {"source", "count", "for_each", "depends_on", "providers"}
        arguments = set(call) - meta
        assert arguments <= set(declared), f"{name}: undeclared {arguments - set(declared)}"
        required = {n for n, body in declared.items() if "default" not in body}
        assert required <= arguments, f"{name}: missing {required - arguments}"
    assert used == MODULE_NAMES


def test_checkov_finds_no_failed_check(checkov: dict) -> None:
    summary = checkov["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] > 100
    failed = [
        f"{f['check_id']} {f['resource']} ({f['file_path']}): {f['check_name']}"
        for f in checkov["results"].get("failed_checks", [])
    ]
    assert not failed, "\n".join(failed)
    assert summary["failed"] == 0


def test_every_checkov_skip_is_justified(checkov: dict) -> None:
    skips = {}
    for path in TERRAFORM.rglob("*.tf"):
        for check, reason in re.findall(r"#checkov:skip=([A-Z0-9_]+):(.*)", path.read_text()):
            assert reason.strip(), f"{path}: {check} skipped without a reason"
            skips.setdefault(check, []).append(Path(path).relative_to(TERRAFORM))
    assert set(skips) == set(JUSTIFIED_SKIPS), "update JUSTIFIED_SKIPS with the reason"
    assert checkov["summary"]["skipped"] >= len(skips)
