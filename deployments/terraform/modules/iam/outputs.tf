output "role_arns" {
  description = "Workload -> role ARN, for the service accounts' eks.amazonaws.com/role-arn annotation."
  value       = { for key, role in aws_iam_role.workload : key => role.arn }
}
