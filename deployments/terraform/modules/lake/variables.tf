variable "name" {
  description = "Deployment name, used in descriptions."
  type        = string
}

variable "region" {
  description = "AWS region of the bucket and its key."
  type        = string
}

variable "bucket_name" {
  description = "The lake bucket (ANALYTICS_LAKE_URL is s3://<bucket>/<prefix>)."
  type        = string
}

variable "prefix" {
  description = "Key prefix the lake writes under."
  type        = string
  default     = "lake"
}

variable "access_log_bucket" {
  description = "An existing bucket that receives the lake's access logs."
  type        = string
}

variable "infrequent_access_after_days" {
  description = "Days after which a day's files move to STANDARD_IA (30 is S3's minimum)."
  type        = number
  default     = 30
  validation {
    condition     = var.infrequent_access_after_days >= 30
    error_message = "S3 moves objects to STANDARD_IA after 30 days at the earliest."
  }
}

variable "archive_after_days" {
  description = "Days after which a day's files move to GLACIER_IR."
  type        = number
  default     = 180
}

variable "noncurrent_versions_kept_days" {
  description = "How long a replaced day's previous files are kept (undo for a bad rebuild)."
  type        = number
  default     = 30
}

variable "retention_days" {
  description = "Table -> days kept, as PRIVACY_RETENTION_DAYS (e.g. {conversation_messages = 90})."
  type        = map(number)
  default     = {}
}
