# MongoDB Atlas: a dedicated replica set in the deployment's region, reachable only through
# a private endpoint from the VPC, with one database user per workload authenticated by its
# AWS IAM role (no password exists, so none can leak or sit in Terraform state): the
# pipeline reads and writes the analytics database, the API only reads it.

resource "mongodbatlas_advanced_cluster" "this" {
  project_id             = var.atlas_project_id
  name                   = var.name
  cluster_type           = "REPLICASET"
  backup_enabled         = true
  pit_enabled            = true
  mongo_db_major_version = "7.0"

  replication_specs {
    region_configs {
      provider_name = "AWS"
      region_name   = var.atlas_region
      priority      = 7
      electable_specs {
        instance_size = var.instance_size
        node_count    = 3
      }
    }
  }

  advanced_configuration {
    javascript_enabled           = false
    minimum_enabled_tls_protocol = "TLS1_2"
  }
}

resource "mongodbatlas_privatelink_endpoint" "this" {
  project_id    = var.atlas_project_id
  provider_name = "AWS"
  region        = var.region
}

resource "aws_vpc_endpoint" "atlas" {
  vpc_id             = var.vpc_id
  service_name       = mongodbatlas_privatelink_endpoint.this.endpoint_service_name
  vpc_endpoint_type  = "Interface"
  subnet_ids         = var.private_subnet_ids
  security_group_ids = var.security_group_ids
}

resource "mongodbatlas_privatelink_endpoint_service" "this" {
  project_id          = var.atlas_project_id
  private_link_id     = mongodbatlas_privatelink_endpoint.this.private_link_id
  endpoint_service_id = aws_vpc_endpoint.atlas.id
  provider_name       = "AWS"
}

resource "mongodbatlas_database_user" "workload" {
  for_each           = var.workload_roles
  project_id         = var.atlas_project_id
  auth_database_name = "$external"
  username           = each.value.role_arn
  aws_iam_type       = "ROLE"

  roles {
    role_name     = each.value.read_only ? "read" : "readWrite"
    database_name = var.database
  }

  scopes {
    name = mongodbatlas_advanced_cluster.this.name
    type = "CLUSTER"
  }
}
