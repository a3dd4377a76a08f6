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

variable "kms_key_arn" {
  description = "KMS key the secrets are encrypted with."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "recovery_window_days" {
  description = "Days a deleted secret can still be restored."
  type        = number
  default     = 30

  validation {
    condition     = var.recovery_window_days >= 7 && var.recovery_window_days <= 30
    error_message = "recovery_window_days must be between 7 and 30."
  }
}

variable "services" {
  description = "Services that get a signing-key secret (ADR 0021)."
  type        = list(string)
  default     = ["identity", "data", "workflows", "registry", "serving", "tracking"]

  validation {
    condition     = alltrue([for service in var.services : contains(["identity", "data", "workflows", "registry", "serving", "tracking"], service)])
    error_message = "services must be among identity, data, workflows, registry, serving, tracking."
  }
}

variable "database_host" {
  description = "Host name of the PostgreSQL instance."
  type        = string
}

variable "database_port" {
  description = "Port of the PostgreSQL instance."
  type        = number
  default     = 5432
}

variable "database_name" {
  description = "Name of the platform's database."
  type        = string
}

variable "database_username" {
  description = "The application's database user (create it once with the master credentials; see the README)."
  type        = string
  default     = "armillary"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.database_username))
    error_message = "database_username must be a lowercase PostgreSQL identifier."
  }
}

variable "database_rotation_days" {
  description = "Days between rotations of the application user's database password."
  type        = number
  default     = 30

  validation {
    condition     = var.database_rotation_days >= 1 && var.database_rotation_days <= 365
    error_message = "database_rotation_days must be between 1 and 365."
  }
}

variable "vpc_id" {
  description = "VPC the rotation function runs in."
  type        = string
}

variable "vpc_cidr_block" {
  description = "CIDR of the VPC (the rotation function reaches PostgreSQL inside it)."
  type        = string

  validation {
    condition     = can(cidrhost(var.vpc_cidr_block, 0))
    error_message = "vpc_cidr_block must be a valid IPv4 CIDR."
  }
}

variable "rotation_subnet_ids" {
  description = "Private subnets (with a route to the Secrets Manager API) for the rotation function."
  type        = list(string)

  validation {
    condition     = length(var.rotation_subnet_ids) >= 2
    error_message = "rotation_subnet_ids must list at least two subnets."
  }
}

variable "redis_host" {
  description = "Primary endpoint of the Redis replication group."
  type        = string
}

variable "redis_port" {
  description = "Port of Redis."
  type        = number
  default     = 6379
}

variable "redis_auth_token" {
  description = "Redis AUTH token, stored inside the redis-url secret."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.redis_auth_token) >= 16
    error_message = "redis_auth_token must be at least 16 characters."
  }
}

variable "rabbitmq_endpoint" {
  description = "amqps://host:5671 endpoint of the broker."
  type        = string

  validation {
    condition     = startswith(var.rabbitmq_endpoint, "amqps://")
    error_message = "rabbitmq_endpoint must be an amqps:// URL (TLS)."
  }
}

variable "rabbitmq_username" {
  description = "The platform's broker user."
  type        = string
}

variable "rabbitmq_password" {
  description = "The broker user's password, stored inside the rabbitmq-url secret."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.rabbitmq_password) >= 12
    error_message = "rabbitmq_password must be at least 12 characters."
  }
}
