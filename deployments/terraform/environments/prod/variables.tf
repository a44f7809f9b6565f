variable "name" {
  description = "Deployment name."
  type        = string
  default     = "analytics-assets"
}

variable "region" {
  description = "AWS region."
  type        = string
}

variable "lake_bucket_name" {
  description = "Globally unique name of the lake bucket."
  type        = string
}

variable "access_log_bucket" {
  description = "Existing bucket for S3 access logs."
  type        = string
}

variable "retention_days" {
  description = "Table -> days kept; the same JSON as PRIVACY_RETENTION_DAYS."
  type        = map(number)
  default = {
    conversation_messages = 90
    processing_errors     = 90
    nocodb_raw_pages      = 30
  }
}

variable "vpc_id" {
  description = "The existing VPC."
  type        = string
}

variable "private_subnet_ids" {
  description = "Its private subnets."
  type        = list(string)
}

variable "node_security_group_ids" {
  description = "Security groups of the node groups (allowed to reach MongoDB)."
  type        = list(string)
}

variable "atlas_project_id" {
  description = "The Atlas project."
  type        = string
}

variable "atlas_region" {
  description = "Atlas region name, e.g. EU_WEST_1."
  type        = string
}
