variable "name" {
  description = "Deployment name; secrets are named <name>/<secret>."
  type        = string
}

variable "region" {
  description = "AWS region."
  type        = string
}

variable "secret_names" {
  description = "The environment variables the workloads read from Secrets Manager."
  type        = list(string)
  default     = ["NOCODB_API_TOKEN", "MONGODB_URI", "PRIVACY_PSEUDONYM_KEY", "DAGSTER_POSTGRES_PASSWORD", "ANALYTICS_ALERT_WEBHOOK_SECRET"]
}
