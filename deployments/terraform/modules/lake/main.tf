# The lake bucket: Parquet files per table and UTC day (`<prefix>/<table>/day=YYYY-MM-DD/`).
# Old days move to cheaper tiers and expire per the privacy retention settings: the same
# per-table days as PRIVACY_RETENTION_DAYS, so a day the pipeline no longer keeps is also
# gone from every object version.

module "lake_key" {
  source      = "../kms_key"
  description = "${var.name}: lake encryption"
  region      = var.region
}

resource "aws_s3_bucket" "lake" {
  bucket = var.bucket_name
  #checkov:skip=CKV_AWS_144:Cross-region replication is a disaster-recovery choice per deployment (docs/disaster-recovery.md); the backup command copies the lake elsewhere.
  #checkov:skip=CKV2_AWS_62:No consumer listens to object events; the pipeline reads the bucket itself.
}

resource "aws_s3_bucket_logging" "lake" {
  bucket        = aws_s3_bucket.lake.id
  target_bucket = var.access_log_bucket
  target_prefix = "s3/${var.bucket_name}/"
}

resource "aws_s3_bucket_versioning" "lake" {
  bucket = aws_s3_bucket.lake.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = module.lake_key.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "lake" {
  bucket                  = aws_s3_bucket.lake.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

data "aws_iam_policy_document" "tls_only" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"]
    resources = [
      aws_s3_bucket.lake.arn,
      "${aws_s3_bucket.lake.arn}/*",
    ]
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "lake" {
  bucket = aws_s3_bucket.lake.id
  policy = data.aws_iam_policy_document.tls_only.json
}

resource "aws_s3_bucket_lifecycle_configuration" "lake" {
  #checkov:skip=CKV_AWS_300:Every rule, the per-table dynamic ones included, aborts incomplete uploads after a day; checkov does not expand dynamic blocks.
  bucket     = aws_s3_bucket.lake.id
  depends_on = [aws_s3_bucket_versioning.lake]

  # Every table: recent days stay in Standard (the reports and backfills read them),
  # older ones move to Infrequent Access, then to Glacier Instant Retrieval (still readable
  # by a backfill without a restore step).
  rule {
    id     = "tiering"
    status = "Enabled"
    filter {
      prefix = "${var.prefix}/"
    }
    transition {
      days          = var.infrequent_access_after_days
      storage_class = "STANDARD_IA"
    }
    transition {
      days          = var.archive_after_days
      storage_class = "GLACIER_IR"
    }
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_versions_kept_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  # Per table, what privacy retention keeps (PRIVACY_RETENTION_DAYS): older days expire.
  dynamic "rule" {
    for_each = var.retention_days
    content {
      id     = "retention-${rule.key}"
      status = "Enabled"
      filter {
        prefix = "${var.prefix}/${rule.key}/"
      }
      expiration {
        days = rule.value
      }
      noncurrent_version_expiration {
        noncurrent_days = 1
      }
      abort_incomplete_multipart_upload {
        days_after_initiation = 1
      }
    }
  }
}
