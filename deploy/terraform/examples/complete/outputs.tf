output "environment" {
  description = "ARMILLARY_* environment of every process (Helm values config/env; ECS uses it as is). Holds references to secrets, never their values."
  value       = local.environment
}

output "irsa_role_arns" {
  description = "IRSA role ARN by process, for serviceAccounts.annotations in the Helm values."
  value       = module.iam.role_arns
}

output "sagemaker_execution_role_arn" {
  description = "Role for the train task's sagemaker.role_arn."
  value       = module.iam.sagemaker_execution_role_arn
}

output "ecr_repository_urls" {
  description = "ECR repository URL by image target."
  value       = module.ecr.repository_urls
}

output "eks_cluster_name" {
  description = "Name of the EKS cluster (aws eks update-kubeconfig --name ...)."
  value       = module.eks.cluster_name
}

output "database_master_secret_arn" {
  description = "Secret with the RDS master credentials, for creating the application user once (see the README)."
  value       = module.rds.master_user_secret_arn
}

output "service_key_secret_arns" {
  description = "Signing-key secret of each service, to fill with `armillary service-keys create`."
  value       = module.secrets.service_key_secret_arns
}

output "alarm_topic_arn" {
  description = "SNS topic of the CloudWatch alarms."
  value       = module.observability.alarm_topic_arn
}

output "ecs_migrations_task_definition_arn" {
  description = "ECS task definition that runs `armillary db upgrade` (null unless enable_ecs)."
  value       = one(module.ecs[*].migrations_task_definition_arn)
}
