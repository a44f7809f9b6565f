# One role per workload, assumed by its Kubernetes service account (IRSA), each allowed
# only what that workload does. No wildcard actions: every action is named.
#   - code location / run pods: read and write the lake and state prefixes, read the
#     pipeline's secrets;
#   - API: read the lake prefix only, read the API's secrets;
#   - webserver / daemon: the Dagster instance lives in Postgres, so only its password,
#     and the steps' compute logs, which the run and step pods (the pipeline role) write.

locals {
  lake_objects = "${var.lake_bucket_arn}/${var.lake_prefix}/*"
  # Resume checkpoints and trained heads (ANALYTICS_STATE_URL): without it every daily
  # pull of a step pod failed on its first checkpoint.
  state_objects = "${var.lake_bucket_arn}/${var.state_prefix}/*"
  # Each step's stdout/stderr (S3ComputeLogManager): without it no step's logs reached the
  # UI once its pod was gone.
  compute_log_objects = "${var.lake_bucket_arn}/${var.compute_logs_prefix}/*"
  oidc_host    = replace(var.oidc_provider_url, "https://", "")
}

data "aws_iam_policy_document" "assume" {
  for_each = var.service_accounts
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:sub"
      values   = ["system:serviceaccount:${var.namespace}:${each.value}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "workload" {
  for_each           = var.service_accounts
  name               = "${var.name}-${each.key}"
  assume_role_policy = data.aws_iam_policy_document.assume[each.key].json
}

# Statements two or three workloads share; each workload's document adds its own.
data "aws_iam_policy_document" "list_lake_prefix" {
  statement {
    sid       = "ListLakePrefix"
    actions   = ["s3:ListBucket"]
    resources = [var.lake_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.lake_prefix}/*"]
    }
  }
}

data "aws_iam_policy_document" "list_compute_log_prefix" {
  statement {
    sid       = "ListComputeLogPrefix"
    actions   = ["s3:ListBucket"]
    resources = [var.lake_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.compute_logs_prefix}/*"]
    }
  }
}

data "aws_iam_policy_document" "use_secrets_key" {
  statement {
    sid       = "UseSecretsKey"
    actions   = ["kms:Decrypt"]
    resources = [var.secrets_kms_key_arn]
  }
}

data "aws_iam_policy_document" "pipeline" {
  source_policy_documents = [
    data.aws_iam_policy_document.list_lake_prefix.json,
    data.aws_iam_policy_document.list_compute_log_prefix.json,
    data.aws_iam_policy_document.use_secrets_key.json,
  ]
  statement {
    sid       = "ReadWriteLake"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = [local.lake_objects, local.state_objects]
  }
  statement {
    sid       = "WriteComputeLogs"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = [local.compute_log_objects]
  }
  statement {
    sid       = "ListStatePrefix"
    actions   = ["s3:ListBucket"]
    resources = [var.lake_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.state_prefix}/*"]
    }
  }
  statement {
    sid       = "UseLakeKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.lake_kms_key_arn]
  }
  statement {
    sid       = "ReadPipelineSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [for name in var.pipeline_secrets : var.secret_arns[name]]
  }
}

data "aws_iam_policy_document" "api" {
  source_policy_documents = [
    data.aws_iam_policy_document.list_lake_prefix.json,
    data.aws_iam_policy_document.use_secrets_key.json,
  ]
  statement {
    sid       = "ReadLake"
    actions   = ["s3:GetObject"]
    resources = [local.lake_objects]
  }
  statement {
    sid       = "UseLakeKey"
    actions   = ["kms:Decrypt"]
    resources = [var.lake_kms_key_arn]
  }
  statement {
    sid       = "ReadApiSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.secret_arns["MONGODB_URI"]]
  }
}

data "aws_iam_policy_document" "dagster" {
  source_policy_documents = [
    data.aws_iam_policy_document.list_compute_log_prefix.json,
    data.aws_iam_policy_document.use_secrets_key.json,
  ]
  statement {
    sid       = "ReadInstancePassword"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.secret_arns["DAGSTER_POSTGRES_PASSWORD"]]
  }
  statement {
    sid       = "ReadComputeLogs"
    actions   = ["s3:GetObject"]
    resources = [local.compute_log_objects]
  }
  # The bucket's objects are encrypted with the lake's key.
  statement {
    sid       = "DecryptComputeLogs"
    actions   = ["kms:Decrypt"]
    resources = [var.lake_kms_key_arn]
  }
}

locals {
  policies = {
    pipeline = data.aws_iam_policy_document.pipeline.json
    api      = data.aws_iam_policy_document.api.json
    dagster  = data.aws_iam_policy_document.dagster.json
  }
}

resource "aws_iam_role_policy" "workload" {
  for_each = var.service_accounts
  name     = "${var.name}-${each.key}"
  role     = aws_iam_role.workload[each.key].id
  policy   = local.policies[each.key]
}
