output "cluster_arn" {
  description = "ARN of the ECS cluster."
  value       = aws_ecs_cluster.this.arn
}

output "tasks_security_group_id" {
  description = "Security group of the tasks (the data stores admit it)."
  value       = aws_security_group.tasks.id
}

output "migrations_task_definition_arn" {
  description = "Task definition to run once per release before the services update (armillary db upgrade)."
  value       = aws_ecs_task_definition.this["migrations"].arn
}
