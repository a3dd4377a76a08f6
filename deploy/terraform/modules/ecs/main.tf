# The same images and environment on ECS Fargate, for operators who choose ECS over EKS:
# the six services, the gateway and the scheduler as services, migrations as a task
# definition to run once per release (`aws ecs run-task`, like the chart's pre-upgrade Job).
# The images' entrypoint is `armillary`, so commands are its arguments.
# Services find each other through ECS Service Connect (ARMILLARY_<SERVICE>_URL).
#
# Workers are not here: Fargate allows neither a custom seccomp profile nor the namespace
# syscalls the bubblewrap sandbox needs (ADR 0011), so workers run on EKS (or EC2 hosts).
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  services = {
    identity  = { command = ["serve", "identity", "--host", "0.0.0.0"], port = 8101, image = "control" }
    data      = { command = ["serve", "data", "--host", "0.0.0.0"], port = 8102, image = "api" }
    workflows = { command = ["serve", "workflows", "--host", "0.0.0.0"], port = 8103, image = "api" }
    registry  = { command = ["serve", "registry", "--host", "0.0.0.0"], port = 8104, image = "api" }
    serving   = { command = ["serve", "serving", "--host", "0.0.0.0"], port = 8105, image = "api" }
    tracking  = { command = ["serve", "tracking", "--host", "0.0.0.0"], port = 8106, image = "control" }
    gateway   = { command = ["gateway"], port = 8000, image = "gateway" }
    scheduler = { command = ["scheduler"], port = null, image = "scheduler" }
  }
  tasks = merge(local.services, {
    migrations = { command = ["db", "upgrade"], port = null, image = "migrations" }
  })

  # Where each service is reached inside the Service Connect namespace.
  service_urls = {
    for name in ["identity", "data", "workflows", "registry", "serving", "tracking"] :
    "ARMILLARY_${upper(name)}_URL" => "http://${name}:${local.services[name].port}"
  }
  # Each process reads its own signing key (worker-side roles use the workflows key).
  service_key_of = {
    identity   = "identity"
    data       = "data"
    workflows  = "workflows"
    registry   = "registry"
    serving    = "serving"
    tracking   = "tracking"
    scheduler  = "workflows"
    gateway    = null
    migrations = null
  }

  # The images' own probe script (deploy/docker/healthcheck.py); the gateway answers /ready
  # on its stats listener, the scheduler's liveness is its metrics listener.
  health_url = {
    identity  = "http://127.0.0.1:8101/healthz"
    data      = "http://127.0.0.1:8102/healthz"
    workflows = "http://127.0.0.1:8103/healthz"
    registry  = "http://127.0.0.1:8104/healthz"
    serving   = "http://127.0.0.1:8105/healthz"
    tracking  = "http://127.0.0.1:8106/healthz"
    gateway   = "http://127.0.0.1:9902/ready"
    scheduler = "http://127.0.0.1:9464/metrics"
  }
}

resource "aws_ecs_cluster" "this" {
  name = var.name
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
  tags = var.tags
}

resource "aws_service_discovery_http_namespace" "this" {
  name        = "${var.name}.internal"
  description = "Service Connect namespace of the Armillary services"
  tags        = var.tags
}

resource "aws_security_group" "tasks" {
  name        = "${var.name}-ecs-tasks"
  description = "Armillary tasks: the gateway from the load balancer, services from each other"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "between_tasks" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Service to service (8101-8106)"
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = 8101
  to_port                      = 8106
}

resource "aws_vpc_security_group_ingress_rule" "gateway" {
  for_each                     = var.load_balancer_security_group_ids
  security_group_id            = aws_security_group.tasks.id
  description                  = "The gateway from the load balancer"
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 8000
  to_port                      = 8000
}

resource "aws_vpc_security_group_egress_rule" "https" {
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS: AWS APIs (Secrets Manager, S3, ECR) through the NAT gateway or endpoints"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "vpc" {
  for_each          = { postgresql = 5432, redis = 6379, amqps = 5671 }
  security_group_id = aws_security_group.tasks.id
  description       = "${each.key} inside the VPC"
  cidr_ipv4         = var.vpc_cidr_block
  ip_protocol       = "tcp"
  from_port         = each.value
  to_port           = each.value
}

resource "aws_vpc_security_group_egress_rule" "between_tasks" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Service to service (8101-8106)"
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = 8101
  to_port                      = 8106
}

data "aws_iam_policy_document" "tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

# The execution role pulls images and writes logs; it reads no secret, since processes
# fetch their own secrets with their task role (the iam module's policies).
resource "aws_iam_role" "execution" {
  name               = "${var.name}-ecs-execution"
  assume_role_policy = data.aws_iam_policy_document.tasks_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

resource "aws_iam_role" "task" {
  for_each           = local.tasks
  name               = "${var.name}-ecs-${each.key}"
  assume_role_policy = data.aws_iam_policy_document.tasks_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "task" {
  for_each = aws_iam_role.task
  name     = "armillary-${each.key}"
  role     = each.value.id
  policy   = var.task_policy_documents[each.key]
}

resource "aws_ecs_task_definition" "this" {
  for_each                 = local.tasks
  family                   = "${var.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.sizes[each.key].cpu
  memory                   = var.sizes[each.key].memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task[each.key].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  # The root filesystem is read-only; /tmp is the task's own ephemeral storage.
  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([{
    name                   = each.key
    image                  = "${var.repository_urls[each.value.image]}:${var.image_tag}"
    command                = each.value.command
    essential              = true
    readonlyRootFilesystem = true
    user                   = var.container_user
    linuxParameters = {
      initProcessEnabled = true
      capabilities       = { drop = ["ALL"] }
    }
    mountPoints = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
    portMappings = each.value.port == null ? [] : [{
      name          = each.key
      containerPort = each.value.port
      protocol      = "tcp"
    }]
    environment = [
      for key, value in merge(
        var.environment,
        local.service_urls,
        lookup(var.process_environment, each.key, {}),
        {
          for setting, service in { ARMILLARY_SERVICE_KEY_SECRET_ID = local.service_key_of[each.key] } :
          setting => var.service_key_secret_arns[service] if service != null
        },
      ) : { name = key, value = value }
    ]
    healthCheck = !contains(keys(local.health_url), each.key) ? null : {
      command     = ["CMD", "python3", "/opt/armillary/healthcheck.py", local.health_url[each.key]]
      interval    = 15
      timeout     = 5
      retries     = 3
      startPeriod = 30
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = var.log_group_names[each.key]
        awslogs-region        = data.aws_region.current.name
        awslogs-stream-prefix = each.key
      }
    }
  }])

  tags = var.tags
}

resource "aws_ecs_service" "this" {
  for_each               = local.services
  name                   = each.key
  cluster                = aws_ecs_cluster.this.id
  task_definition        = aws_ecs_task_definition.this[each.key].arn
  desired_count          = var.sizes[each.key].desired_count
  launch_type            = "FARGATE"
  platform_version       = "LATEST"
  propagate_tags         = "SERVICE"
  enable_execute_command = false

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  service_connect_configuration {
    enabled   = true
    namespace = aws_service_discovery_http_namespace.this.arn
    dynamic "service" {
      for_each = each.value.port == null || each.key == "gateway" ? [] : [each.value.port]
      content {
        port_name = each.key
        client_alias {
          dns_name = each.key
          port     = service.value
        }
      }
    }
  }

  dynamic "load_balancer" {
    for_each = each.key == "gateway" && var.gateway_target_group_arn != null ? [var.gateway_target_group_arn] : []
    content {
      target_group_arn = load_balancer.value
      container_name   = "gateway"
      container_port   = 8000
    }
  }

  tags = var.tags
}
