variable "name" {
  description = "Name of this deployment, the prefix of every resource (e.g. armillary-prod)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name must be 3-31 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "AWS region to deploy into."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region such as eu-west-1."
  }
}

variable "availability_zones" {
  description = "Zones to spread over (at least two: RDS, ElastiCache and Amazon MQ are Multi-AZ)."
  type        = list(string)

  validation {
    condition     = length(var.availability_zones) >= 2
    error_message = "availability_zones must list at least two zones."
  }
}

variable "vpc_cidr_block" {
  description = "IPv4 CIDR of the VPC."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr_block, 0))
    error_message = "vpc_cidr_block must be a valid IPv4 CIDR."
  }
}

variable "api_allowed_cidrs" {
  description = "Private networks (VPN, CI runners) allowed to reach the private Kubernetes API."
  type        = list(string)

  validation {
    condition     = alltrue([for cidr in var.api_allowed_cidrs : can(cidrhost(cidr, 0)) && cidr != "0.0.0.0/0"])
    error_message = "api_allowed_cidrs must be valid CIDRs, and never 0.0.0.0/0."
  }
}

variable "bucket_name" {
  description = "Globally unique name of the platform's bucket."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,49}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name of at most 51 characters."
  }
}

variable "database_instance_class" {
  description = "RDS instance class of PostgreSQL."
  type        = string
  default     = "db.m6g.large"

  validation {
    condition     = can(regex("^db\\.[a-z0-9]+\\.[a-z0-9]+$", var.database_instance_class))
    error_message = "database_instance_class must look like db.m6g.large."
  }
}

variable "database_ca_file" {
  description = "Path, inside the images, of the RDS CA bundle that verifies PostgreSQL (ARMILLARY_DATABASE_CA_FILE); mount it from a ConfigMap or bake it in."
  type        = string

  validation {
    condition     = startswith(var.database_ca_file, "/")
    error_message = "database_ca_file must be an absolute path."
  }
}

variable "kubernetes_namespace" {
  description = "Namespace of the Helm release (the IRSA trust policies name it)."
  type        = string
  default     = "armillary"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.kubernetes_namespace))
    error_message = "kubernetes_namespace must be a valid Kubernetes namespace name."
  }
}

variable "training_image_repository_arns" {
  description = "ECR repositories holding SageMaker training images (docs/training-image.md)."
  type        = list(string)

  validation {
    condition     = length(var.training_image_repository_arns) > 0
    error_message = "training_image_repository_arns must list at least one repository."
  }
}

variable "alarm_emails" {
  description = "Addresses notified of CloudWatch alarms."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for email in var.alarm_emails : can(regex("^[^@ ]+@[^@ ]+\\.[^@ ]+$", email))])
    error_message = "alarm_emails must be e-mail addresses."
  }
}

variable "enable_ecs" {
  description = "Also run the services on ECS Fargate (the same images and environment), for operators who choose ECS."
  type        = bool
  default     = false
}

variable "image_tag" {
  description = "Release tag of the images ECS runs (ECR tags are immutable)."
  type        = string
  default     = "0.1.0"

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag)) && var.image_tag != "latest"
    error_message = "image_tag must be a valid tag other than latest."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
