output "log_group_names" {
  description = "Application log group name by process."
  value       = { for process, group in aws_cloudwatch_log_group.process : process => group.name }
}

output "alarm_topic_arn" {
  description = "SNS topic the alarms notify."
  value       = aws_sns_topic.alarms.arn
}
