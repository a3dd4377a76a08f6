output "bucket_name" {
  description = "Name of the platform's bucket, for ARMILLARY_STORAGE_S3_BUCKET."
  value       = aws_s3_bucket.data.bucket
}

output "bucket_arn" {
  description = "ARN of the platform's bucket (IAM policies scope it by key prefix)."
  value       = aws_s3_bucket.data.arn
}

output "access_log_bucket_name" {
  description = "Name of the bucket holding the server access logs."
  value       = aws_s3_bucket.access_logs.bucket
}
