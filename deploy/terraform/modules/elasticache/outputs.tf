output "primary_endpoint" {
  description = "Primary endpoint host, for ARMILLARY_REDIS_URL (rediss://)."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}

output "port" {
  description = "Port of the cache."
  value       = aws_elasticache_replication_group.this.port
}

output "replication_group_id" {
  description = "ID of the replication group (CloudWatch alarm dimension)."
  value       = aws_elasticache_replication_group.this.id
}

output "security_group_id" {
  description = "Security group of the cache."
  value       = aws_security_group.this.id
}
