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

variable "repositories" {
  description = "Image targets to create a repository for (<name>/<target>)."
  type        = list(string)
  default     = ["api", "control", "gateway", "worker", "scheduler", "migrations"]

  validation {
    condition     = length(var.repositories) > 0 && alltrue([for repo in var.repositories : can(regex("^[a-z0-9][a-z0-9._-]{0,62}$", repo))])
    error_message = "repositories must be non-empty lowercase repository names."
  }
}

variable "kms_key_arn" {
  description = "KMS key the repositories are encrypted with."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "untagged_expire_days" {
  description = "Days an untagged image is kept."
  type        = number
  default     = 14

  validation {
    condition     = var.untagged_expire_days >= 1
    error_message = "untagged_expire_days must be at least 1."
  }
}
