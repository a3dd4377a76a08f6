output "broker_id" {
  description = "ID of the broker (CloudWatch alarm dimension is its name)."
  value       = aws_mq_broker.this.id
}

output "broker_name" {
  description = "Name of the broker."
  value       = aws_mq_broker.this.broker_name
}

output "amqps_endpoint" {
  description = "amqps://host:5671 endpoint of the broker, for ARMILLARY_RABBITMQ_URL."
  value       = aws_mq_broker.this.instances[0].endpoints[0]
}

output "security_group_id" {
  description = "Security group of the broker."
  value       = aws_security_group.this.id
}
