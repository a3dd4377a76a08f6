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
  description = "VPC of the broker's security group."
  type        = string
}

variable "subnet_ids" {
  description = "Data subnets in at least two zones for the Multi-AZ cluster."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "subnet_ids must list at least two subnets in different zones."
  }
}

variable "allowed_security_group_ids" {
  description = "Security groups (EKS nodes, ECS tasks) allowed to connect on 5671, by a name known at plan time (eks, ecs, ...): for_each keys cannot wait for apply."
  type        = map(string)
}

variable "engine_version" {
  description = "RabbitMQ version offered by Amazon MQ."
  type        = string
  default     = "3.13"

  validation {
    condition     = can(regex("^[34]\\.[0-9]+(\\.[0-9]+)?$", var.engine_version))
    error_message = "engine_version must look like 3.13."
  }
}

variable "instance_type" {
  description = "Broker instance type (a cluster needs mq.m5.large or larger)."
  type        = string
  default     = "mq.m5.large"

  validation {
    condition     = can(regex("^mq\\.m[0-9a-z]+\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type must be an mq.m* type (clusters do not run on mq.t3.micro)."
  }
}

variable "username" {
  description = "The platform's broker user."
  type        = string
  default     = "armillary"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.~-]{2,100}$", var.username)) && var.username != "guest"
    error_message = "username must be 2-100 characters of letters, digits, _ . ~ - and not guest."
  }
}

variable "password" {
  description = "The broker user's password (12-250 characters, no commas, colons or equals signs). Kept in Secrets Manager by the secrets module."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.password) >= 12 && length(var.password) <= 250 && !can(regex("[,:=]", var.password))
    error_message = "password must be 12 to 250 characters without , : or =."
  }
}
