output "role_arns" {
  description = "IRSA role ARN by process, for the eks.amazonaws.com/role-arn annotation of each service account."
  value       = { for process, role in aws_iam_role.irsa : process => role.arn }
}

output "policy_documents" {
  description = "Each process's permission policy (JSON), reused by the ECS module for its task roles."
  value       = local.policies
}

output "sagemaker_execution_role_arn" {
  description = "Role SageMaker training jobs run as (the train task's sagemaker.role_arn)."
  value       = aws_iam_role.sagemaker_execution.arn
}
