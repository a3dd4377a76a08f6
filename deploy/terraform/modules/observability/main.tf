# Logs, alarms and Container Insights. Every log group has a retention and the platform key:
# the application groups (one per process, used by ECS's awslogs driver) and the groups the
# CloudWatch observability add-on writes to on EKS, created first so they are not created
# later without retention.
data "aws_partition" "current" {}

locals {
  # `prometheus`: the CloudWatch agent's Prometheus scrape (the chart's
  # monitoring.cloudwatchAgent) writes its embedded-metric-format events there (ADR 0033).
  container_insights_groups = ["application", "dataplane", "host", "performance", "prometheus"]
}

resource "aws_cloudwatch_log_group" "process" {
  for_each          = toset(var.processes)
  name              = "/armillary/${var.name}/${each.value}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_cloudwatch_log_group" "container_insights" {
  for_each          = var.eks_cluster_name == null ? toset([]) : toset(local.container_insights_groups)
  name              = "/aws/containerinsights/${var.eks_cluster_name}/${each.value}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

# Container Insights on EKS: the amazon-cloudwatch-observability add-on, its agent running
# with its own IRSA role.
data "aws_iam_policy_document" "cloudwatch_agent_assume" {
  count = var.eks_cluster_name == null ? 0 : 1
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.oidc_issuer}:sub"
      values   = ["system:serviceaccount:amazon-cloudwatch:cloudwatch-agent"]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "cloudwatch_agent" {
  count              = var.eks_cluster_name == null ? 0 : 1
  name               = "${var.name}-cloudwatch-agent"
  assume_role_policy = data.aws_iam_policy_document.cloudwatch_agent_assume[0].json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "cloudwatch_agent" {
  count      = var.eks_cluster_name == null ? 0 : 1
  role       = aws_iam_role.cloudwatch_agent[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/CloudWatchAgentServerPolicy"
}

resource "aws_eks_addon" "container_insights" {
  count                    = var.eks_cluster_name == null ? 0 : 1
  cluster_name             = var.eks_cluster_name
  addon_name               = "amazon-cloudwatch-observability"
  service_account_role_arn = aws_iam_role.cloudwatch_agent[0].arn
  tags                     = var.tags
  depends_on               = [aws_cloudwatch_log_group.container_insights]
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = var.kms_key_arn
  tags              = var.tags
}

resource "aws_sns_topic_subscription" "email" {
  for_each  = toset(var.alarm_emails)
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = each.value
}

locals {
  # One alarm per name; each notifies the alarm topic when it fires and when it clears.
  alarms = {
    rds-cpu-high = {
      namespace   = "AWS/RDS"
      metric      = "CPUUtilization"
      statistic   = "Average"
      dimensions  = { DBInstanceIdentifier = var.rds_instance_identifier }
      comparison  = "GreaterThanThreshold"
      threshold   = 80
      description = "PostgreSQL CPU above 80% for 15 minutes"
    }
    rds-free-storage-low = {
      namespace   = "AWS/RDS"
      metric      = "FreeStorageSpace"
      statistic   = "Minimum"
      dimensions  = { DBInstanceIdentifier = var.rds_instance_identifier }
      comparison  = "LessThanThreshold"
      threshold   = var.rds_free_storage_bytes_threshold
      description = "PostgreSQL free storage below the threshold"
    }
    rds-connections-high = {
      namespace   = "AWS/RDS"
      metric      = "DatabaseConnections"
      statistic   = "Maximum"
      dimensions  = { DBInstanceIdentifier = var.rds_instance_identifier }
      comparison  = "GreaterThanThreshold"
      threshold   = var.rds_connections_threshold
      description = "PostgreSQL connections near the budget of ADR 0025"
    }
    redis-cpu-high = {
      namespace   = "AWS/ElastiCache"
      metric      = "EngineCPUUtilization"
      statistic   = "Average"
      dimensions  = { ReplicationGroupId = var.redis_replication_group_id }
      comparison  = "GreaterThanThreshold"
      threshold   = 80
      description = "Redis engine CPU above 80% for 15 minutes"
    }
    redis-memory-high = {
      namespace   = "AWS/ElastiCache"
      metric      = "DatabaseMemoryUsagePercentage"
      statistic   = "Maximum"
      dimensions  = { ReplicationGroupId = var.redis_replication_group_id }
      comparison  = "GreaterThanThreshold"
      threshold   = 85
      description = "Redis memory above 85%"
    }
    rabbitmq-cpu-high = {
      namespace   = "AWS/AmazonMQ"
      metric      = "SystemCpuUtilization"
      statistic   = "Average"
      dimensions  = { Broker = var.mq_broker_name }
      comparison  = "GreaterThanThreshold"
      threshold   = 80
      description = "RabbitMQ CPU above 80% for 15 minutes"
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "this" {
  for_each            = local.alarms
  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = each.value.description
  namespace           = each.value.namespace
  metric_name         = each.value.metric
  statistic           = each.value.statistic
  dimensions          = each.value.dimensions
  comparison_operator = each.value.comparison
  threshold           = each.value.threshold
  period              = 300
  evaluation_periods  = 3
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}
