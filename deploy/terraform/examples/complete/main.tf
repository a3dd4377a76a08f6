# The whole platform on AWS: EKS as the primary path, ECS Fargate as an option
# (enable_ecs). Both get the same images and the same environment (local.environment, also
# an output for the Helm values). Credentials are generated here or by RDS and live in
# Secrets Manager; Terraform state holds the generated ones, so keep state encrypted and
# access-controlled (an S3 backend with SSE-KMS and a lock).
locals {
  processes = ["identity", "data", "workflows", "registry", "serving", "tracking", "gateway", "scheduler", "worker", "migrations"]
}

module "kms" {
  source = "../../modules/kms"
  name   = var.name
}

module "network" {
  source             = "../../modules/network"
  name               = var.name
  cidr_block         = var.vpc_cidr_block
  availability_zones = var.availability_zones
  kms_key_arn        = module.kms.key_arn
}

module "eks" {
  source            = "../../modules/eks"
  name              = var.name
  vpc_id            = module.network.vpc_id
  subnet_ids        = module.network.private_subnet_ids
  api_allowed_cidrs = var.api_allowed_cidrs
  kms_key_arn       = module.kms.key_arn
  node_groups = {
    services = { instance_types = ["m7i.large"], min_size = 2, desired_size = 3, max_size = 6 }
    # Workers only: the taint keeps the API pods off the nodes that run tasks.
    workers = {
      instance_types = ["m7i.xlarge"], min_size = 1, desired_size = 2, max_size = 10
      labels         = { "armillary.dev/pool" = "workers" }
      taints         = [{ key = "armillary.dev/workers", value = "true", effect = "NO_SCHEDULE" }]
    }
  }
}

# Who reaches the data stores: the EKS cluster security group, ECS tasks when enabled, and
# the rotation function (PostgreSQL only).
locals {
  # Keys are known at plan time, as for_each needs; the group ids are not.
  compute_security_groups = merge(
    { eks = module.eks.cluster_security_group_id },
    { for key, id in { ecs = one(module.ecs[*].tasks_security_group_id) } : key => id if var.enable_ecs },
  )
}

module "rds" {
  source                     = "../../modules/rds"
  name                       = var.name
  vpc_id                     = module.network.vpc_id
  subnet_ids                 = module.network.data_subnet_ids
  allowed_security_group_ids = merge(local.compute_security_groups, { rotation = module.secrets.rotation_security_group_id })
  kms_key_arn                = module.kms.key_arn
  instance_class             = var.database_instance_class
}

resource "random_password" "redis_auth" {
  length  = 64
  special = false
}

resource "random_password" "rabbitmq" {
  length  = 40
  special = false
}

module "elasticache" {
  source                     = "../../modules/elasticache"
  name                       = var.name
  vpc_id                     = module.network.vpc_id
  subnet_ids                 = module.network.data_subnet_ids
  allowed_security_group_ids = local.compute_security_groups
  kms_key_arn                = module.kms.key_arn
  auth_token                 = random_password.redis_auth.result
}

module "mq" {
  source                     = "../../modules/mq"
  name                       = var.name
  vpc_id                     = module.network.vpc_id
  subnet_ids                 = module.network.data_subnet_ids
  allowed_security_group_ids = local.compute_security_groups
  password                   = random_password.rabbitmq.result
}

module "s3" {
  source      = "../../modules/s3"
  name        = var.name
  bucket_name = var.bucket_name
  kms_key_arn = module.kms.key_arn
}

module "ecr" {
  source      = "../../modules/ecr"
  name        = var.name
  kms_key_arn = module.kms.key_arn
}

module "secrets" {
  source              = "../../modules/secrets"
  name                = var.name
  kms_key_arn         = module.kms.key_arn
  vpc_id              = module.network.vpc_id
  vpc_cidr_block      = module.network.vpc_cidr_block
  rotation_subnet_ids = module.network.private_subnet_ids
  database_host       = module.rds.address
  database_port       = module.rds.port
  database_name       = module.rds.database_name
  redis_host          = module.elasticache.primary_endpoint
  redis_port          = module.elasticache.port
  redis_auth_token    = random_password.redis_auth.result
  rabbitmq_endpoint   = module.mq.amqps_endpoint
  rabbitmq_username   = "armillary"
  rabbitmq_password   = random_password.rabbitmq.result
}

module "iam" {
  source                         = "../../modules/iam"
  name                           = var.name
  oidc_provider_arn              = module.eks.oidc_provider_arn
  oidc_issuer                    = module.eks.oidc_issuer
  namespace                      = var.kubernetes_namespace
  bucket_arn                     = module.s3.bucket_arn
  kms_key_arn                    = module.kms.key_arn
  secret_arns                    = module.secrets.secret_arns
  service_key_secret_arns        = module.secrets.service_key_secret_arns
  training_image_repository_arns = var.training_image_repository_arns
}

module "observability" {
  source                     = "../../modules/observability"
  name                       = var.name
  kms_key_arn                = module.kms.key_arn
  processes                  = local.processes
  eks_cluster_name           = module.eks.cluster_name
  oidc_provider_arn          = module.eks.oidc_provider_arn
  oidc_issuer                = module.eks.oidc_issuer
  alarm_emails               = var.alarm_emails
  rds_instance_identifier    = module.rds.instance_identifier
  redis_replication_group_id = module.elasticache.replication_group_id
  mq_broker_name             = module.mq.broker_name
}

module "backup" {
  source           = "../../modules/backup"
  name             = var.name
  kms_key_arn      = module.kms.key_arn
  rds_instance_arn = module.rds.instance_arn
  bucket_arn       = module.s3.bucket_arn
}

# The environment every process gets, on EKS (Helm values) and ECS alike. Secrets are
# references the processes resolve themselves (ARMILLARY_<X>_SECRET_ID).
locals {
  environment = {
    ARMILLARY_PROFILE                     = "production"
    ARMILLARY_DATABASE_URL                = "postgresql+asyncpg://armillary@${module.rds.address}:${module.rds.port}/${module.rds.database_name}"
    ARMILLARY_DATABASE_PASSWORD_SECRET_ID = "${module.secrets.secret_arns["database"]}#password"
    ARMILLARY_DATABASE_SSLMODE            = "verify-full"
    ARMILLARY_DATABASE_CA_FILE            = var.database_ca_file
    ARMILLARY_REDIS_URL_SECRET_ID         = module.secrets.secret_arns["redis-url"]
    ARMILLARY_RABBITMQ_URL_SECRET_ID      = module.secrets.secret_arns["rabbitmq-url"]
    ARMILLARY_EVENT_TRANSPORT             = "rabbitmq"
    ARMILLARY_SECRET_KEY_SECRET_ID        = module.secrets.secret_arns["secret-key"]
    ARMILLARY_STORAGE_BACKEND             = "s3"
    ARMILLARY_STORAGE_S3_BUCKET           = module.s3.bucket_name
    ARMILLARY_STORAGE_S3_REGION           = var.region
    ARMILLARY_STORAGE_KMS_KEY_ID          = module.kms.key_arn
    # Clients reach the platform through the gateway behind a TLS-terminating load balancer;
    # service ports stay on the private network (docs/operations.md, "TLS on every hop").
    ARMILLARY_TLS_TERMINATED_BY_PROXY = "true"
    ARMILLARY_TRUSTED_PROXIES         = module.network.vpc_cidr_block
    AWS_REGION                        = var.region
  }
}

module "ecs" {
  source                  = "../../modules/ecs"
  count                   = var.enable_ecs ? 1 : 0
  name                    = var.name
  vpc_id                  = module.network.vpc_id
  vpc_cidr_block          = module.network.vpc_cidr_block
  subnet_ids              = module.network.private_subnet_ids
  repository_urls         = module.ecr.repository_urls
  image_tag               = var.image_tag
  environment             = local.environment
  process_environment     = { identity = { ARMILLARY_ADMIN_PASSWORD_SECRET_ID = module.secrets.secret_arns["admin-password"] } }
  service_key_secret_arns = module.secrets.service_key_secret_arns
  task_policy_documents   = module.iam.policy_documents
  log_group_names         = module.observability.log_group_names
}
