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
  description = "VPC the tasks run in."
  type        = string
}

variable "vpc_cidr_block" {
  description = "CIDR of the VPC (the data stores live in it)."
  type        = string

  validation {
    condition     = can(cidrhost(var.vpc_cidr_block, 0))
    error_message = "vpc_cidr_block must be a valid IPv4 CIDR."
  }
}

variable "subnet_ids" {
  description = "Private subnets for the tasks."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "subnet_ids must list at least two subnets."
  }
}

variable "load_balancer_security_group_ids" {
  description = "Security groups of the load balancer in front of the gateway, by a name known at plan time."
  type        = map(string)
  default     = {}
}

variable "gateway_target_group_arn" {
  description = "Target group (of an NLB passing TLS through, or an ALB) that sends clients to the gateway; null for none."
  type        = string
  default     = null

  validation {
    condition     = var.gateway_target_group_arn == null || can(regex("^arn:aws[a-z-]*:elasticloadbalancing:", var.gateway_target_group_arn))
    error_message = "gateway_target_group_arn must be a target group ARN or null."
  }
}

variable "repository_urls" {
  description = "ECR repository URL by image target (the ecr module's repository_urls): api, control, gateway, scheduler, migrations."
  type        = map(string)

  validation {
    condition     = alltrue([for target in ["api", "control", "gateway", "scheduler", "migrations"] : contains(keys(var.repository_urls), target)])
    error_message = "repository_urls must hold api, control, gateway, scheduler and migrations."
  }
}

variable "image_tag" {
  description = "Image tag to run (immutable in ECR: a release's tag, never latest)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag)) && var.image_tag != "latest"
    error_message = "image_tag must be a valid tag other than latest."
  }
}

variable "container_user" {
  description = "uid:gid the containers run as (the images' non-root user)."
  type        = string
  default     = "10001:10001"

  validation {
    condition     = can(regex("^[1-9][0-9]*:[1-9][0-9]*$", var.container_user))
    error_message = "container_user must be a non-root uid:gid such as 10001:10001."
  }
}

variable "cpu_architecture" {
  description = "CPU architecture of the images (X86_64 or ARM64)."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "environment" {
  description = "ARMILLARY_* environment shared by every process (the same map the Helm values get); secrets only as *_SECRET_ID references."
  type        = map(string)

  validation {
    condition     = alltrue([for key in keys(var.environment) : can(regex("^(ARMILLARY|AWS)_[A-Z0-9_]+$", key))])
    error_message = "environment keys must be ARMILLARY_* or AWS_* variables."
  }
}

variable "process_environment" {
  description = "Extra environment of single processes, e.g. identity's ARMILLARY_ADMIN_PASSWORD_SECRET_ID."
  type        = map(map(string))
  default     = {}
}

variable "service_key_secret_arns" {
  description = "Signing-key secret ARN of each service."
  type        = map(string)
}

variable "task_policy_documents" {
  description = "Permission policy (JSON) of each process (the iam module's policy_documents)."
  type        = map(string)
}

variable "log_group_names" {
  description = "Log group name by process (the observability module's log_group_names)."
  type        = map(string)
}

variable "sizes" {
  description = "Fargate CPU units, memory (MiB) and copies of each process."
  type = map(object({
    cpu           = number
    memory        = number
    desired_count = optional(number, 2)
  }))
  default = {
    identity   = { cpu = 512, memory = 1024 }
    data       = { cpu = 1024, memory = 4096 }
    workflows  = { cpu = 512, memory = 1024 }
    registry   = { cpu = 512, memory = 2048 }
    serving    = { cpu = 1024, memory = 2048 }
    tracking   = { cpu = 512, memory = 1024 }
    gateway    = { cpu = 512, memory = 1024 }
    scheduler  = { cpu = 256, memory = 512 }
    migrations = { cpu = 256, memory = 512, desired_count = 0 }
  }

  validation {
    condition = alltrue([
      for process in ["identity", "data", "workflows", "registry", "serving", "tracking", "gateway", "scheduler", "migrations"] :
      contains(keys(var.sizes), process)
    ]) && alltrue([for size in values(var.sizes) : contains([256, 512, 1024, 2048, 4096, 8192, 16384], size.cpu) && size.desired_count >= 0])
    error_message = "sizes must cover every process, with a Fargate cpu value (256 ... 16384) and desired_count >= 0."
  }
}
