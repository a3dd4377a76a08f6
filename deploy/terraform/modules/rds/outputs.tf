output "instance_arn" {
  description = "ARN of the DB instance (AWS Backup selects it)."
  value       = aws_db_instance.this.arn
}

output "instance_identifier" {
  description = "Identifier of the DB instance (CloudWatch alarm dimension)."
  value       = aws_db_instance.this.identifier
}

output "address" {
  description = "Host name of the database, for ARMILLARY_DATABASE_URL."
  value       = aws_db_instance.this.address
}

output "port" {
  description = "Port of the database."
  value       = aws_db_instance.this.port
}

output "database_name" {
  description = "Name of the platform's database."
  value       = aws_db_instance.this.db_name
}

output "security_group_id" {
  description = "Security group of the database."
  value       = aws_security_group.this.id
}

output "master_user_secret_arn" {
  description = "Secrets Manager secret RDS keeps the master credentials in (rotated by RDS)."
  value       = aws_db_instance.this.master_user_secret[0].secret_arn
}
