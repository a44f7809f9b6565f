output "secret_arns" {
  description = "Secret name -> ARN, for the workload roles that may read them."
  value       = { for name, secret in aws_secretsmanager_secret.this : name => secret.arn }
}

output "kms_key_arn" {
  description = "The key the secrets are encrypted with."
  value       = module.secrets_key.arn
}
