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
  description = "KMS key for the log groups and the alarm topic."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "processes" {
  description = "Processes that get an application log group /armillary/<name>/<process>."
  type        = list(string)
  default     = ["identity", "data", "workflows", "registry", "serving", "tracking", "gateway", "scheduler", "worker", "migrations"]

  validation {
    condition     = length(var.processes) > 0
    error_message = "processes must not be empty."
  }
}

variable "log_retention_days" {
  description = "Days every log group keeps its events."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention CloudWatch Logs accepts (e.g. 30, 90, 365)."
  }
}

variable "eks_cluster_name" {
  description = "EKS cluster to enable Container Insights on; null when running on ECS only (its cluster setting enables it there)."
  type        = string
  default     = null
}

variable "oidc_provider_arn" {
  description = "IAM OIDC provider of the EKS cluster (for the CloudWatch agent's role); null without EKS."
  type        = string
  default     = null
}

variable "oidc_issuer" {
  description = "OIDC issuer of the EKS cluster without https://; null without EKS."
  type        = string
  default     = null
}

variable "alarm_emails" {
  description = "Addresses subscribed to the alarm topic (each confirms by e-mail)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for email in var.alarm_emails : can(regex("^[^@ ]+@[^@ ]+\\.[^@ ]+$", email))])
    error_message = "alarm_emails must be e-mail addresses."
  }
}

variable "rds_instance_identifier" {
  description = "Identifier of the PostgreSQL instance."
  type        = string
}

variable "rds_free_storage_bytes_threshold" {
  description = "Alarm when PostgreSQL's free storage falls below this many bytes."
  type        = number
  default     = 10737418240

  validation {
    condition     = var.rds_free_storage_bytes_threshold > 0
    error_message = "rds_free_storage_bytes_threshold must be positive."
  }
}

variable "rds_connections_threshold" {
  description = "Alarm above this many PostgreSQL connections (ADR 0025 budgets 100)."
  type        = number
  default     = 90

  validation {
    condition     = var.rds_connections_threshold > 0
    error_message = "rds_connections_threshold must be positive."
  }
}

variable "redis_replication_group_id" {
  description = "ID of the Redis replication group."
  type        = string
}

variable "mq_broker_name" {
  description = "Name of the RabbitMQ broker."
  type        = string
}

variable "prometheus_metrics_namespace" {
  description = "CloudWatch namespace of the platform metrics the CloudWatch agent sends (the chart's monitoring.cloudwatchAgent.namespace)."
  type        = string
  default     = "Armillary"

  validation {
    condition     = can(regex("^[A-Za-z0-9_./#-]{1,255}$", var.prometheus_metrics_namespace)) && !startswith(var.prometheus_metrics_namespace, "AWS/")
    error_message = "prometheus_metrics_namespace must be 1-255 letters, digits or _./#- and not start with AWS/."
  }
}

variable "slo_services" {
  description = "Services that get an availability SLO alarm (the `service` label of armillary_http_requests_total)."
  type        = list(string)
  default     = ["identity", "data", "workflows", "registry", "serving", "tracking"]

  validation {
    condition     = length(var.slo_services) > 0 && alltrue([for s in var.slo_services : can(regex("^[a-z][a-z0-9-]{1,30}$", s))])
    error_message = "slo_services must be a non-empty list of lowercase service names."
  }
}

variable "availability_objective" {
  description = "Availability SLO: the share of requests answered without a 5xx over 30 days (deploy/prometheus/rules uses 0.995)."
  type        = number
  default     = 0.995

  validation {
    condition     = var.availability_objective >= 0.9 && var.availability_objective < 1
    error_message = "availability_objective must be in [0.9, 1)."
  }
}

variable "queue_age_threshold_seconds" {
  description = "Alarm when the oldest queued task run has waited longer than this."
  type        = number
  default     = 900

  validation {
    condition     = var.queue_age_threshold_seconds >= 60
    error_message = "queue_age_threshold_seconds must be at least 60."
  }
}

variable "min_live_workers" {
  description = "Alarm when fewer workers than this have a fresh heartbeat."
  type        = number
  default     = 1

  validation {
    condition     = var.min_live_workers >= 1 && floor(var.min_live_workers) == var.min_live_workers
    error_message = "min_live_workers must be a whole number of at least 1."
  }
}

variable "outbox_lag_threshold_seconds" {
  description = "Alarm when the oldest committed event has waited longer than this to be published (the Prometheus rule uses 300)."
  type        = number
  default     = 300

  validation {
    condition     = var.outbox_lag_threshold_seconds >= 30
    error_message = "outbox_lag_threshold_seconds must be at least 30."
  }
}

variable "object_store_free_ratio_threshold" {
  description = "Alarm when the object store's free space falls below this share."
  type        = number
  default     = 0.1

  validation {
    condition     = var.object_store_free_ratio_threshold > 0 && var.object_store_free_ratio_threshold < 1
    error_message = "object_store_free_ratio_threshold must be between 0 and 1."
  }
}
