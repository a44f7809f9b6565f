output "lake_base_url" {
  description = "ANALYTICS_LAKE_URL."
  value       = module.lake.lake_base_url
}

output "workload_role_arns" {
  description = "For the service accounts in deployments/k8s (eks.amazonaws.com/role-arn)."
  value       = module.iam.role_arns
}

output "cluster_name" {
  description = "aws eks update-kubeconfig --name <this>."
  value       = module.eks.cluster_name
}

output "mongodb_connection_string" {
  description = "MONGODB_URI (add authMechanism=MONGODB-AWS)."
  value       = module.mongodb.connection_string
}
