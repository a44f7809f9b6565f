variable "name" {
  description = "Cluster name."
  type        = string
}

variable "region" {
  description = "AWS region of the VPC endpoint."
  type        = string
}

variable "atlas_project_id" {
  description = "The Atlas project (created outside this module, with its billing)."
  type        = string
}

variable "atlas_region" {
  description = "Atlas region name, e.g. EU_WEST_1."
  type        = string
}

variable "instance_size" {
  description = "Atlas tier (M30 holds ~180k documents per day of writes comfortably)."
  type        = string
  default     = "M30"
}

variable "database" {
  description = "The analytics database (MONGODB_DATABASE)."
  type        = string
  default     = "analytics"
}

variable "vpc_id" {
  description = "The VPC the workloads run in."
  type        = string
}

variable "private_subnet_ids" {
  description = "Subnets of the private endpoint."
  type        = list(string)
}

variable "security_group_ids" {
  description = "Security groups allowed to reach the endpoint (the node groups')."
  type        = list(string)
}

variable "workload_roles" {
  description = "Workload -> its IAM role ARN, whether it only reads, and the collections a reading workload still inserts into and updates (`writes`)."
  type = map(object({
    role_arn  = string
    read_only = bool
    writes    = optional(list(string), [])
  }))
}
