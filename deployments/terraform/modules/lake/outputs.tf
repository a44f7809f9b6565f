output "bucket_arn" {
  description = "ARN of the lake bucket."
  value       = aws_s3_bucket.lake.arn
}

output "bucket_name" {
  description = "Name of the lake bucket."
  value       = aws_s3_bucket.lake.id
}

output "kms_key_arn" {
  description = "The key the lake is encrypted with; workload roles are granted its use."
  value       = module.lake_key.arn
}

output "lake_base_url" {
  description = "ANALYTICS_LAKE_URL for the deployment."
  value       = "s3://${aws_s3_bucket.lake.id}/${var.prefix}"
}
