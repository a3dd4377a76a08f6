output "repository_urls" {
  description = "Repository URL by image target, for image references in Helm values and ECS."
  value       = { for target, repo in aws_ecr_repository.this : target => repo.repository_url }
}

output "repository_arns" {
  description = "Repository ARN by image target (the CI push role is scoped to them)."
  value       = { for target, repo in aws_ecr_repository.this : target => repo.arn }
}
