# The production deployment on AWS: the lake, the secrets, the cluster, the workload roles
# and MongoDB. The Helm release (deployments/k8s) runs on the cluster and is given the role
# ARNs and the lake URL from the outputs.

module "lake" {
  source                       = "../../modules/lake"
  name                         = var.name
  region                       = var.region
  bucket_name                  = var.lake_bucket_name
  access_log_bucket            = var.access_log_bucket
  retention_days               = var.retention_days
  infrequent_access_after_days = 30
  archive_after_days           = 180
}

module "secrets" {
  source = "../../modules/secrets"
  name   = var.name
  region = var.region
}

module "eks" {
  source             = "../../modules/eks"
  name               = var.name
  region             = var.region
  private_subnet_ids = var.private_subnet_ids
}

module "iam" {
  source              = "../../modules/iam"
  name                = var.name
  oidc_provider_arn   = module.eks.oidc_provider_arn
  oidc_provider_url   = module.eks.oidc_provider_url
  lake_bucket_arn     = module.lake.bucket_arn
  lake_prefix         = "lake"
  lake_kms_key_arn    = module.lake.kms_key_arn
  secret_arns         = module.secrets.secret_arns
  secrets_kms_key_arn = module.secrets.kms_key_arn
}

module "mongodb" {
  source             = "../../modules/mongodb"
  name               = var.name
  region             = var.region
  atlas_project_id   = var.atlas_project_id
  atlas_region       = var.atlas_region
  vpc_id             = var.vpc_id
  private_subnet_ids = var.private_subnet_ids
  security_group_ids = var.node_security_group_ids
  workload_roles = {
    pipeline = { role_arn = module.iam.role_arns["pipeline"], read_only = false }
    # The read API writes webhook subscriptions only: POST /webhooks adds one, DELETE
    # /webhooks/{id} deactivates it and cancels its pending deliveries.
    api = {
      role_arn  = module.iam.role_arns["api"]
      read_only = true
      writes    = ["webhook_subscriptions", "webhook_deliveries"]
    }
  }
}
