variable "name" {
  description = "Name prefix of the platform's resources (e.g. armillary-prod)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name must be 3-31 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
}

variable "oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/", var.oidc_provider_arn))
    error_message = "oidc_provider_arn must be an IAM OIDC provider ARN."
  }
}

variable "oidc_issuer" {
  description = "OIDC issuer of the cluster without https:// (the prefix of the trust conditions)."
  type        = string

  validation {
    condition     = !startswith(var.oidc_issuer, "https://")
    error_message = "oidc_issuer must not include the https:// scheme."
  }
}

variable "namespace" {
  description = "Kubernetes namespace the Helm release runs in."
  type        = string
  default     = "armillary"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a valid Kubernetes namespace name."
  }
}

variable "service_account_prefix" {
  description = "Service accounts are <prefix>-<process> (e.g. armillary-serving), as the Helm chart names them."
  type        = string
  default     = "armillary"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$", var.service_account_prefix))
    error_message = "service_account_prefix must be a DNS label of at most 42 characters."
  }
}

variable "bucket_arn" {
  description = "ARN of the platform's bucket."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:s3:::[a-z0-9.-]+$", var.bucket_arn))
    error_message = "bucket_arn must be an S3 bucket ARN."
  }
}

variable "kms_key_arn" {
  description = "KMS key of the bucket and the secrets."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "secret_arns" {
  description = "Platform secret ARNs by name (the secrets module's secret_arns)."
  type        = map(string)

  validation {
    condition     = alltrue([for name in ["secret-key", "admin-password", "database", "redis-url", "rabbitmq-url"] : contains(keys(var.secret_arns), name)])
    error_message = "secret_arns must hold secret-key, admin-password, database, redis-url and rabbitmq-url."
  }
}

variable "service_key_secret_arns" {
  description = "Signing-key secret ARN of each service (the secrets module's service_key_secret_arns)."
  type        = map(string)

  validation {
    condition     = alltrue([for service in ["identity", "data", "workflows", "registry", "serving", "tracking"] : contains(keys(var.service_key_secret_arns), service)])
    error_message = "service_key_secret_arns must hold identity, data, workflows, registry, serving and tracking."
  }
}

variable "sagemaker_prefix" {
  description = "Key prefix in the bucket for SageMaker training input and output (the train task's sagemaker.prefix)."
  type        = string
  default     = "sagemaker"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+$", var.sagemaker_prefix)) && var.sagemaker_prefix != "projects"
    error_message = "sagemaker_prefix must be one path segment, and not projects (the platform's own data)."
  }
}

variable "training_image_repository_arns" {
  description = "ECR repositories SageMaker may pull training images from."
  type        = list(string)

  validation {
    condition     = length(var.training_image_repository_arns) > 0 && alltrue([for arn in var.training_image_repository_arns : can(regex("^arn:aws[a-z-]*:ecr:", arn))])
    error_message = "training_image_repository_arns must list at least one ECR repository ARN."
  }
}
