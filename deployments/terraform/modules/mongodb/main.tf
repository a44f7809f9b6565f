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

# A reading workload that must still write a few collections (the API: webhook
# subscriptions and the cancelling of their pending deliveries, which `POST /webhooks` and
# `DELETE /webhooks/{id}` write) gets a role that inserts and updates those collections
# only, beside `read` on the database.
resource "mongodbatlas_custom_db_role" "writes" {
  for_each   = { for name, workload in var.workload_roles : name => workload if length(workload.writes) > 0 }
  project_id = var.atlas_project_id
  role_name  = "${var.name}-${each.key}-writes"

  dynamic "actions" {
    for_each = toset(["FIND", "INSERT", "UPDATE"])
    content {
      action = actions.value
      dynamic "resources" {
        for_each = toset(each.value.writes)
        content {
          database_name   = var.database
          collection_name = resources.value
        }
      }
    }
  }
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

  dynamic "roles" {
    for_each = contains(keys(mongodbatlas_custom_db_role.writes), each.key) ? [each.key] : []
    content {
      role_name     = mongodbatlas_custom_db_role.writes[roles.value].role_name
      database_name = "admin" # where Atlas keeps custom roles
    }
  }

  scopes {
    name = mongodbatlas_advanced_cluster.this.name
    type = "CLUSTER"
  }
}
