output "secret_arns" {
  description = "ARNs of the platform secrets by name: secret-key, admin-password, database, redis-url, rabbitmq-url."
  value       = { for name, secret in aws_secretsmanager_secret.this : name => secret.arn }
}

output "service_key_secret_arns" {
  description = "ARN of each service's signing-key secret (fill with `armillary service-keys create`)."
  value       = { for service, secret in aws_secretsmanager_secret.service_key : service => secret.arn }
}

output "rotation_security_group_id" {
  description = "Security group of the rotation function (the database must admit it)."
  value       = aws_security_group.rotation.id
}
