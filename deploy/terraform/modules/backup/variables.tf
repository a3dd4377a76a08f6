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
  description = "KMS key of the backup vault."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "rds_instance_arn" {
  description = "ARN of the PostgreSQL instance to back up."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:rds:", var.rds_instance_arn))
    error_message = "rds_instance_arn must be an RDS ARN."
  }
}

variable "bucket_arn" {
  description = "ARN of the platform's bucket to back up (versioning must be on)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:s3:::", var.bucket_arn))
    error_message = "bucket_arn must be an S3 bucket ARN."
  }
}

variable "continuous_retention_days" {
  description = "Days of continuous backup (the point-in-time window AWS Backup offers)."
  type        = number
  default     = 35

  validation {
    condition     = var.continuous_retention_days >= 1 && var.continuous_retention_days <= 35
    error_message = "continuous_retention_days must be between 1 and 35 (AWS Backup's limit)."
  }
}

variable "daily_schedule" {
  description = "Cron expression (UTC) of the daily snapshot."
  type        = string
  default     = "cron(0 3 * * ? *)"

  validation {
    condition     = can(regex("^cron\\(.+\\)$", var.daily_schedule))
    error_message = "daily_schedule must be an AWS cron(...) expression."
  }
}

variable "daily_retention_days" {
  description = "Days the daily snapshots are kept."
  type        = number
  default     = 90

  validation {
    condition     = var.daily_retention_days >= 7
    error_message = "daily_retention_days must be at least 7."
  }
}

variable "copy_to_vault_arn" {
  description = "A vault in another region (or account) that receives a copy of each daily snapshot; null for none."
  type        = string
  default     = null

  validation {
    condition     = var.copy_to_vault_arn == null || can(regex("^arn:aws[a-z-]*:backup:", var.copy_to_vault_arn))
    error_message = "copy_to_vault_arn must be an AWS Backup vault ARN or null."
  }
}
