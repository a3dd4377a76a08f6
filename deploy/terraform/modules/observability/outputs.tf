output "log_group_names" {
  description = "Application log group name by process."
  value       = { for process, group in aws_cloudwatch_log_group.process : process => group.name }
}

output "alarm_topic_arn" {
  description = "SNS topic the alarms notify."
  value       = aws_sns_topic.alarms.arn
}

output "prometheus_log_group_name" {
  description = "Log group the CloudWatch agent's Prometheus scrape writes to (the chart's monitoring.cloudwatchAgent.logGroupName); null without EKS."
  value       = var.eks_cluster_name == null ? null : aws_cloudwatch_log_group.container_insights["prometheus"].name
}

output "slo_alarm_names" {
  description = "Names of the alarms on the platform's own metrics (availability per service, queue, workers, outbox, dead letters, object store)."
  value       = concat([for a in aws_cloudwatch_metric_alarm.availability : a.alarm_name], [for a in aws_cloudwatch_metric_alarm.platform : a.alarm_name])
}
