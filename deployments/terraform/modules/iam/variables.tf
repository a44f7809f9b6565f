variable "name" {
  description = "Deployment name; roles are named <name>-<workload>."
  type        = string
}

variable "namespace" {
  description = "Kubernetes namespace of the Helm release."
  type        = string
  default     = "analytics"
}

variable "service_accounts" {
  description = "Workload -> Kubernetes service account that assumes its role."
  type        = map(string)
  default = {
    pipeline = "analytics-pipeline"
    api      = "analytics-api"
    dagster  = "dagster"
  }
  validation {
    condition     = alltrue([for key in keys(var.service_accounts) : contains(["pipeline", "api", "dagster"], key)])
    error_message = "Workloads are pipeline, api and dagster."
  }
}

variable "oidc_provider_arn" {
  description = "The EKS cluster's OIDC provider (IRSA)."
  type        = string
}

variable "oidc_provider_url" {
  description = "The EKS cluster's OIDC issuer URL."
  type        = string
}

variable "lake_bucket_arn" {
  description = "ARN of the lake bucket."
  type        = string
}

variable "lake_prefix" {
  description = "The lake's key prefix; roles reach only below it."
  type        = string
}

variable "state_prefix" {
  description = "The pipeline's state prefix in the lake bucket (ANALYTICS_STATE_URL: resume checkpoints, trained heads); only the pipeline reaches it."
  type        = string
  default     = "state"
}

variable "compute_logs_prefix" {
  description = "Where the Dagster instance's S3ComputeLogManager keeps each step's stdout/stderr (computeLogManager.prefix in deployments/k8s/values.yaml): run and step pods write there, the webserver reads."
  type        = string
  default     = "dagster/compute-logs"
}

variable "lake_kms_key_arn" {
  description = "The lake's encryption key."
  type        = string
}

variable "secret_arns" {
  description = "Secret name -> ARN (the secrets module's output)."
  type        = map(string)
}

variable "secrets_kms_key_arn" {
  description = "The secrets' encryption key."
  type        = string
}

variable "pipeline_secrets" {
  description = "Secrets the code location and run pods read."
  type        = list(string)
  default     = ["NOCODB_API_TOKEN", "MONGODB_URI", "PRIVACY_PSEUDONYM_KEY", "ANALYTICS_ALERT_WEBHOOK_SECRET"]
}
