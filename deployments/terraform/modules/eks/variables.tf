variable "name" {
  description = "Cluster name."
  type        = string
}

variable "region" {
  description = "AWS region."
  type        = string
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version."
  type        = string
  default     = "1.33"
}

variable "private_subnet_ids" {
  description = "Private subnets for the control plane and the nodes (an existing VPC)."
  type        = list(string)
}

variable "cpu_instance_types" {
  description = "Instance types of the CPU pool (run pods, code location, API)."
  type        = list(string)
  default     = ["m7i.xlarge", "m6i.xlarge"]
}

variable "cpu_capacity_type" {
  description = "ON_DEMAND or SPOT for the CPU pool (runs are idempotent per day: SPOT is safe)."
  type        = string
  default     = "SPOT"
  validation {
    condition     = contains(["ON_DEMAND", "SPOT"], var.cpu_capacity_type)
    error_message = "ON_DEMAND or SPOT."
  }
}

variable "cpu_min_nodes" {
  description = "Nodes the CPU pool keeps (webserver, daemon, code location, API)."
  type        = number
  default     = 2
}

variable "cpu_max_nodes" {
  description = "Most CPU nodes during a backfill."
  type        = number
  default     = 10
}

variable "gpu_instance_types" {
  description = "Instance types of the GPU pool (model tier)."
  type        = list(string)
  default     = ["g6.xlarge"]
}

variable "gpu_max_nodes" {
  description = "Most GPU nodes at once."
  type        = number
  default     = 2
}
