# Alarms on the platform's own metrics (ADR 0033): the CloudWatch agent scrapes every process's
# /metrics (the chart's monitoring.cloudwatchAgent) and sends the key series as embedded metric
# format events, which CloudWatch turns into metrics of var.prometheus_metrics_namespace with
# the dimensions the chart declares. The agent drops histograms, so the latency SLOs stay with
# Prometheus (deploy/prometheus/rules); these alarms cover availability per service, the task
# queue, the workers, the outbox, the dead letters and the object store's free space. Only
# on EKS (the agent runs there): none when eks_cluster_name is null.
locals {
  on_eks = var.eks_cluster_name != null
  platform_dimensions = local.on_eks ? { ClusterName = var.eks_cluster_name } : {}
  # Fast burn of the 30-day availability budget: 14.4x over an hour (12 periods of 5 minutes),
  # as the page-level Prometheus alert ArmillaryApiErrorBudgetBurn.
  availability_burn_threshold = 14.4 * (1 - var.availability_objective)

  platform_alarms = {
    task-queue-age-high = {
      metric      = "armillary_task_queue_age_seconds"
      statistic   = "Maximum"
      comparison  = "GreaterThanThreshold"
      threshold   = var.queue_age_threshold_seconds
      missing     = "notBreaching"
      description = "A task run has waited longer than the threshold for a worker (runbook: ArmillaryTaskQueueStalled)"
    }
    workers-missing = {
      metric      = "armillary_workers_live"
      statistic   = "Maximum"
      comparison  = "LessThanThreshold"
      threshold   = var.min_live_workers
      missing     = "breaching"
      description = "Fewer live workers (fresh heartbeats) than the minimum"
    }
    outbox-lag-high = {
      metric      = "armillary_outbox_lag_seconds"
      statistic   = "Maximum"
      comparison  = "GreaterThanThreshold"
      threshold   = var.outbox_lag_threshold_seconds
      missing     = "notBreaching"
      description = "Committed events wait longer than the threshold to be published (runbook: ArmillaryOutboxLagHigh)"
    }
    dead-letters = {
      metric      = "armillary_event_dead_letters"
      statistic   = "Maximum"
      comparison  = "GreaterThanThreshold"
      threshold   = 0
      missing     = "notBreaching"
      description = "Messages wait in the dead-letter queue (runbook: ArmillaryDeadLettersGrowing)"
    }
    object-store-free-low = {
      metric      = "armillary_object_store_free_ratio"
      statistic   = "Minimum"
      comparison  = "LessThanThreshold"
      threshold   = var.object_store_free_ratio_threshold
      missing     = "notBreaching"
      description = "The object store's free space is below the threshold"
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "platform" {
  for_each            = local.on_eks ? local.platform_alarms : {}
  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = each.value.description
  namespace           = var.prometheus_metrics_namespace
  metric_name         = each.value.metric
  statistic           = each.value.statistic
  dimensions          = local.platform_dimensions
  comparison_operator = each.value.comparison
  threshold           = each.value.threshold
  period              = 300
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  treat_missing_data  = each.value.missing
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

# Availability SLO per service: the share of 5xx answers (status_class, set by the agent's
# relabelling) burns the budget 14.4 times too fast for a whole hour.
resource "aws_cloudwatch_metric_alarm" "availability" {
  for_each            = local.on_eks ? toset(var.slo_services) : toset([])
  alarm_name          = "${var.name}-${each.value}-availability-burn"
  alarm_description   = "${each.value} answers more than ${local.availability_burn_threshold * 100}% 5xx for an hour: the 30-day budget of the ${var.availability_objective * 100}% objective goes within 2 days (runbook: ArmillaryApiErrorBudgetBurn)"
  comparison_operator = "GreaterThanThreshold"
  threshold           = local.availability_burn_threshold
  evaluation_periods  = 12
  datapoints_to_alarm = 12
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags

  metric_query {
    id          = "ratio"
    expression  = "FILL(errors, 0) / (FILL(errors, 0) + FILL(answered, 0))"
    label       = "5xx share"
    return_data = true
  }

  metric_query {
    id = "errors"
    metric {
      namespace   = var.prometheus_metrics_namespace
      metric_name = "armillary_http_requests_total"
      dimensions  = merge(local.platform_dimensions, { service = each.value, status_class = "5xx" })
      period      = 300
      stat        = "Sum"
    }
  }

  metric_query {
    id = "answered"
    metric {
      namespace   = var.prometheus_metrics_namespace
      metric_name = "armillary_http_requests_total"
      dimensions  = merge(local.platform_dimensions, { service = each.value, status_class = "ok" })
      period      = 300
      stat        = "Sum"
    }
  }
}
