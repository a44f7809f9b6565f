output "connection_string" {
  description = "The private-endpoint SRV connection string (MONGODB_URI, with authMechanism=MONGODB-AWS)."
  value       = try(mongodbatlas_advanced_cluster.this.connection_strings[0].private_endpoint[0].srv_connection_string, null)
}
