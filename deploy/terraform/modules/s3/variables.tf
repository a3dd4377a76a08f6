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

variable "bucket_name" {
  description = "Name of the platform's bucket (ARMILLARY_STORAGE_S3_BUCKET); the access-log bucket is <name>-access-logs."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,49}[a-z0-9]$", var.bucket_name)) && !can(regex("\\.\\.", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name of at most 51 characters (room for -access-logs)."
  }
}

variable "kms_key_arn" {
  description = "KMS key for SSE-KMS (also ARMILLARY_STORAGE_KMS_KEY_ID)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "processed_to_ia_days" {
  description = "Days before objects tagged armillary-class=processed move to STANDARD_IA (ARMILLARY_STORAGE_PROCESSED_TO_IA_DAYS)."
  type        = number
  default     = 30

  validation {
    condition     = var.processed_to_ia_days >= 30
    error_message = "processed_to_ia_days must be at least 30: S3 refuses an earlier STANDARD_IA transition."
  }
}

variable "noncurrent_expire_days" {
  description = "Days a non-current object version is kept (ARMILLARY_STORAGE_NONCURRENT_EXPIRE_DAYS)."
  type        = number
  default     = 90

  validation {
    condition     = var.noncurrent_expire_days >= 1
    error_message = "noncurrent_expire_days must be at least 1."
  }
}

variable "abort_multipart_days" {
  description = "Days after which incomplete multipart uploads are aborted (ARMILLARY_STORAGE_ABORT_MULTIPART_DAYS)."
  type        = number
  default     = 7

  validation {
    condition     = var.abort_multipart_days >= 1
    error_message = "abort_multipart_days must be at least 1."
  }
}

variable "log_retention_days" {
  description = "Days server access logs are kept."
  type        = number
  default     = 365

  validation {
    condition     = var.log_retention_days >= 1
    error_message = "log_retention_days must be at least 1."
  }
}
