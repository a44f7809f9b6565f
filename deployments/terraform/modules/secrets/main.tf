# The deployment's secrets live in Secrets Manager and are referenced by name: Terraform
# creates the entries and their key, never their values (set them with the console or
# `aws secretsmanager put-secret-value`), so no secret passes through Terraform state.

module "secrets_key" {
  source      = "../kms_key"
  description = "${var.name}: secrets encryption"
  region      = var.region
}

resource "aws_secretsmanager_secret" "this" {
  for_each    = toset(var.secret_names)
  name        = "${var.name}/${each.value}"
  description = "${var.name}: ${each.value} (value set outside Terraform)"
  kms_key_id  = module.secrets_key.arn
  #checkov:skip=CKV2_AWS_57:Rotation belongs to the issuer of each secret (NocoDB token, Atlas user, pseudonym key); docs/privacy.md describes rotating the pseudonym key.
}
