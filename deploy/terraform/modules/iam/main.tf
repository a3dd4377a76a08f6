# Least-privilege roles, one per process, assumed through IRSA by that process's Kubernetes
# service account only. The platform keeps one bucket (ARMILLARY_STORAGE_S3_BUCKET), laid out
# by key (kit/storage/keys.py), so object access is scoped by key prefix:
#
# | process   | datasets | jobs | code | models | deployments | runs | sagemaker/ |
# |-----------|----------|------|------|--------|-------------|------|------------|
# | data      | rw       |      |      |        |             |      |            |
# | workflows |          | rw   | rw   |        |             |      |            |
# | scheduler |          | rw   |      |        |             |      |            |
# | worker    | read     | rw   | read |        |             |      | rw, PassRole |
# | registry  |          | read |      | rw     |             | read |            |
# | serving   |          |      |      | read   | rw          |      |            |
# | tracking  |          |      |      |        |             | rw   |            |
#
# Only data and worker ever name the dataset prefix, and only worker may pass the SageMaker
# execution role (docs/training-image.md). Identity, the gateway and migrations touch no
# object. Every process reads the shared secrets, because every `armillary` command loads
# the settings, which resolve each *_SECRET_ID of the shared environment at start.
data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  prefixes = {
    datasets    = "projects/*/datasets/*"
    jobs        = "projects/*/jobs/*"
    code        = "projects/*/code/*"
    models      = "projects/*/models/*"
    deployments = "projects/*/deployments/*"
    runs        = "projects/*/runs/*"
    sagemaker   = "${var.sagemaker_prefix}/*"
  }
  read       = ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging"]
  read_write = ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:PutObject", "s3:PutObjectTagging", "s3:DeleteObject", "s3:AbortMultipartUpload"]

  # Secrets each process reads: the shared ones, and its own service key.
  shared_secrets = [for name in ["secret-key", "database", "redis-url", "rabbitmq-url"] : var.secret_arns[name]]
  service_key = {
    identity  = var.service_key_secret_arns["identity"]
    data      = var.service_key_secret_arns["data"]
    workflows = var.service_key_secret_arns["workflows"]
    registry  = var.service_key_secret_arns["registry"]
    serving   = var.service_key_secret_arns["serving"]
    tracking  = var.service_key_secret_arns["tracking"]
    # Workers mint job tokens with the workflows key (docs/operations.md); the scheduler
    # builds the workflows service.
    worker    = var.service_key_secret_arns["workflows"]
    scheduler = var.service_key_secret_arns["workflows"]
    # No service key: the gateway calls no internal route, migrations call no service.
    gateway    = null
    migrations = null
  }

  policies = {
    identity   = data.aws_iam_policy_document.identity.json
    data       = data.aws_iam_policy_document.data.json
    workflows  = data.aws_iam_policy_document.workflows.json
    registry   = data.aws_iam_policy_document.registry.json
    serving    = data.aws_iam_policy_document.serving.json
    tracking   = data.aws_iam_policy_document.tracking.json
    scheduler  = data.aws_iam_policy_document.scheduler.json
    worker     = data.aws_iam_policy_document.worker.json
    gateway    = data.aws_iam_policy_document.base["gateway"].json
    migrations = data.aws_iam_policy_document.base["migrations"].json
  }
}

# Secrets and the key that decrypts them (S3 SSE-KMS uses the same key).
data "aws_iam_policy_document" "base" {
  for_each = local.service_key

  statement {
    sid       = "ReadOwnSecrets"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = concat(local.shared_secrets, each.value == null ? [] : [each.value])
  }
  statement {
    sid       = "UsePlatformKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
}

data "aws_iam_policy_document" "identity" {
  source_policy_documents = [data.aws_iam_policy_document.base["identity"].json]
  statement {
    sid       = "ReadAdminPassword"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.secret_arns["admin-password"]]
  }
}

data "aws_iam_policy_document" "data" {
  source_policy_documents = [data.aws_iam_policy_document.base["data"].json]
  statement {
    sid       = "ReadWriteDatasets"
    actions   = local.read_write
    resources = ["${var.bucket_arn}/${local.prefixes.datasets}"]
  }
  statement {
    sid       = "ListDatasets"
    actions   = ["s3:ListBucket", "s3:ListBucketVersions"]
    resources = [var.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [local.prefixes.datasets]
    }
  }
}

data "aws_iam_policy_document" "workflows" {
  source_policy_documents = [data.aws_iam_policy_document.base["workflows"].json]
  statement {
    sid       = "ReadWriteJobsAndCode"
    actions   = local.read_write
    resources = ["${var.bucket_arn}/${local.prefixes.jobs}", "${var.bucket_arn}/${local.prefixes.code}"]
  }
  statement {
    sid       = "ListJobsAndCode"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [local.prefixes.jobs, local.prefixes.code]
    }
  }
}

data "aws_iam_policy_document" "scheduler" {
  source_policy_documents = [data.aws_iam_policy_document.base["scheduler"].json]
  # Log retention (workflows/scheduling/retention.py) deletes old job objects.
  statement {
    sid       = "ReadWriteJobs"
    actions   = local.read_write
    resources = ["${var.bucket_arn}/${local.prefixes.jobs}"]
  }
  statement {
    sid       = "ListJobs"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [local.prefixes.jobs]
    }
  }
}

data "aws_iam_policy_document" "registry" {
  source_policy_documents = [data.aws_iam_policy_document.base["registry"].json]
  statement {
    sid       = "ReadWriteModels"
    actions   = local.read_write
    resources = ["${var.bucket_arn}/${local.prefixes.models}"]
  }
  # Registering a model copies its artifact out of the job that trained it.
  statement {
    sid       = "ReadJobArtifacts"
    actions   = local.read
    resources = ["${var.bucket_arn}/${local.prefixes.jobs}"]
  }
  # Registering from an MLflow run (ADR 0037, decision 10) copies the run's model file.
  statement {
    sid       = "ReadRunArtifacts"
    actions   = local.read
    resources = ["${var.bucket_arn}/${local.prefixes.runs}"]
  }
  statement {
    sid       = "ListModels"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [local.prefixes.models]
    }
  }
}

data "aws_iam_policy_document" "serving" {
  source_policy_documents = [data.aws_iam_policy_document.base["serving"].json]
  statement {
    sid       = "ReadModels"
    actions   = local.read
    resources = ["${var.bucket_arn}/${local.prefixes.models}"]
  }
  # Prediction samples (serving/storage_references.py).
  statement {
    sid       = "ReadWriteDeploymentSamples"
    actions   = local.read_write
    resources = ["${var.bucket_arn}/${local.prefixes.deployments}"]
  }
  statement {
    sid       = "ListDeploymentSamples"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [local.prefixes.deployments]
    }
  }
}

# Run artifacts (ADR 0037), and nothing else of the bucket.
data "aws_iam_policy_document" "tracking" {
  source_policy_documents = [data.aws_iam_policy_document.base["tracking"].json]
  statement {
    sid       = "ReadWriteRunArtifacts"
    actions   = local.read_write
    resources = ["${var.bucket_arn}/${local.prefixes.runs}"]
  }
  statement {
    sid       = "ListRunArtifacts"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [local.prefixes.runs]
    }
  }
}

data "aws_iam_policy_document" "worker" {
  source_policy_documents = [data.aws_iam_policy_document.base["worker"].json]
  statement {
    sid       = "ReadDatasetsAndCode"
    actions   = local.read
    resources = ["${var.bucket_arn}/${local.prefixes.datasets}", "${var.bucket_arn}/${local.prefixes.code}"]
  }
  statement {
    sid       = "ReadWriteJobsAndTrainingData"
    actions   = local.read_write
    resources = ["${var.bucket_arn}/${local.prefixes.jobs}", "${var.bucket_arn}/${local.prefixes.sagemaker}"]
  }
  statement {
    sid       = "ListWorkerPrefixes"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [local.prefixes.datasets, local.prefixes.jobs, local.prefixes.sagemaker]
    }
  }
  # The worker submits and follows SageMaker training jobs for the sandboxed train task.
  statement {
    sid       = "RunTrainingJobs"
    actions   = ["sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob", "sagemaker:AddTags"]
    resources = ["arn:${data.aws_partition.current.partition}:sagemaker:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:training-job/armillary-*"]
  }
  statement {
    sid       = "PassSageMakerExecutionRole"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.sagemaker_execution.arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["sagemaker.amazonaws.com"]
    }
  }
}

# IRSA trust: exactly one service account of one namespace, for the STS audience.
data "aws_iam_policy_document" "irsa" {
  for_each = local.policies
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${var.namespace}:${var.service_account_prefix}-${each.key}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "irsa" {
  for_each           = local.policies
  name               = "${var.name}-${each.key}"
  description        = "Armillary ${each.key} (IRSA: ${var.namespace}/${var.service_account_prefix}-${each.key})"
  assume_role_policy = data.aws_iam_policy_document.irsa[each.key].json
  tags               = var.tags
}

resource "aws_iam_role_policy" "irsa" {
  for_each = local.policies
  name     = "armillary-${each.key}"
  role     = aws_iam_role.irsa[each.key].id
  policy   = each.value
}

# The role SageMaker itself assumes for a training job (docs/training-image.md).
data "aws_iam_policy_document" "sagemaker_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["sagemaker.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

data "aws_iam_policy_document" "sagemaker_execution" {
  statement {
    sid       = "TrainingDataAndModelOutput"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${var.bucket_arn}/${local.prefixes.sagemaker}"]
  }
  statement {
    sid       = "ListTrainingPrefix"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [local.prefixes.sagemaker]
    }
  }
  statement {
    sid       = "PullTrainingImage"
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    resources = var.training_image_repository_arns
  }
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }
  statement {
    sid       = "TrainingLogs"
    actions   = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["arn:${data.aws_partition.current.partition}:logs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:log-group:/aws/sagemaker/TrainingJobs:*"]
  }
  statement {
    sid       = "UsePlatformKey"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role" "sagemaker_execution" {
  name               = "${var.name}-sagemaker-training"
  description        = "Assumed by SageMaker for Armillary training jobs; only the worker role may pass it"
  assume_role_policy = data.aws_iam_policy_document.sagemaker_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "sagemaker_execution" {
  name   = "armillary-sagemaker-training"
  role   = aws_iam_role.sagemaker_execution.id
  policy = data.aws_iam_policy_document.sagemaker_execution.json
}
