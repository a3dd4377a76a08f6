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

variable "vpc_id" {
  description = "VPC of the database's security group."
  type        = string
}

variable "subnet_ids" {
  description = "Data subnets (no internet route) in at least two zones, for Multi-AZ."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "subnet_ids must list at least two subnets in different zones."
  }
}

variable "allowed_security_group_ids" {
  description = "Security groups (EKS nodes, ECS tasks) allowed to connect on 5432, by a name known at plan time (eks, ecs, ...): for_each keys cannot wait for apply."
  type        = map(string)
}

variable "kms_key_arn" {
  description = "KMS key for storage, Performance Insights and the master-user secret."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "engine_major_version" {
  description = "PostgreSQL major version; the parameter group family follows it."
  type        = string
  default     = "16"

  validation {
    condition     = contains(["15", "16", "17"], var.engine_major_version)
    error_message = "engine_major_version must be 15, 16 or 17."
  }
}

variable "engine_version" {
  description = "Exact PostgreSQL version, within engine_major_version (e.g. 16.8)."
  type        = string
  default     = "16.8"

  validation {
    condition     = can(regex("^1[5-7]\\.[0-9]+$", var.engine_version))
    error_message = "engine_version must look like 16.8."
  }
}

variable "instance_class" {
  description = "RDS instance class; ADR 0025 sizes the platform's connections to fit max_connections of this class."
  type        = string
  default     = "db.m6g.large"

  validation {
    condition     = can(regex("^db\\.[a-z0-9]+\\.[a-z0-9]+$", var.instance_class))
    error_message = "instance_class must look like db.m6g.large."
  }
}

variable "database_name" {
  description = "Name of the platform's database."
  type        = string
  default     = "armillary"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.database_name))
    error_message = "database_name must be a lowercase PostgreSQL identifier."
  }
}

variable "master_username" {
  description = "Master user name; its password is generated and rotated by RDS in Secrets Manager."
  type        = string
  default     = "armillary_admin"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,15}$", var.master_username)) && !contains(["admin", "postgres", "rdsadmin"], var.master_username)
    error_message = "master_username must be a lowercase identifier of at most 16 characters, not a reserved name."
  }
}

variable "allocated_storage_gb" {
  description = "Initial storage in GiB."
  type        = number
  default     = 100

  validation {
    condition     = var.allocated_storage_gb >= 20 && var.allocated_storage_gb <= 65536
    error_message = "allocated_storage_gb must be between 20 and 65536."
  }
}

variable "max_allocated_storage_gb" {
  description = "Ceiling for storage autoscaling in GiB."
  type        = number
  default     = 1000

  validation {
    condition     = var.max_allocated_storage_gb >= 20 && var.max_allocated_storage_gb <= 65536
    error_message = "max_allocated_storage_gb must be between 20 and 65536."
  }
}

variable "backup_retention_days" {
  description = "Days of automated backups, the point-in-time-restore window."
  type        = number
  default     = 14

  validation {
    condition     = var.backup_retention_days >= 7 && var.backup_retention_days <= 35
    error_message = "backup_retention_days must be between 7 and 35: point-in-time restore needs backups."
  }
}

variable "log_min_duration_ms" {
  description = "Statements slower than this are logged (log_min_duration_statement); -1 turns it off."
  type        = number
  default     = 1000

  validation {
    condition     = var.log_min_duration_ms >= -1
    error_message = "log_min_duration_ms must be -1 or more."
  }
}
