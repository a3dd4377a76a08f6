output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "vpc_cidr_block" {
  description = "CIDR of the VPC (security groups of the data stores admit it)."
  value       = aws_vpc.this.cidr_block
}

output "public_subnet_ids" {
  description = "Public subnets, one per zone: load balancers and NAT gateways."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "Private subnets, one per zone: EKS nodes and ECS tasks."
  value       = aws_subnet.private[*].id
}

output "data_subnet_ids" {
  description = "Data subnets without an internet route, one per zone: RDS, ElastiCache, Amazon MQ."
  value       = aws_subnet.data[*].id
}
