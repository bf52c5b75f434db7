# Buckets: the Parquet lake, Athena query results, and the server access logs of both.
# Every bucket is versioned, encrypted, TLS-only, owner-enforced and blocked from public access.

locals {
  buckets = {
    lake        = { name = local.lake_bucket, kms = true }
    athena      = { name = local.athena_bucket, kms = true }
    access_logs = { name = local.access_logs_bucket, kms = false } # S3 log delivery needs SSE-S3
  }
}

resource "aws_s3_bucket" "this" {
  for_each      = local.buckets
  bucket        = each.value.name
  force_destroy = false
  tags          = merge(local.tags, { Name = each.value.name, Purpose = each.key })
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each                = aws_s3_bucket.this
  bucket                  = each.value.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  for_each = aws_s3_bucket.this
  bucket   = each.value.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = aws_s3_bucket.this
  bucket   = each.value.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = local.buckets[each.key].kms ? "aws:kms" : "AES256"
      kms_master_key_id = local.buckets[each.key].kms ? aws_kms_key.main.arn : null
    }
    bucket_key_enabled = local.buckets[each.key].kms
  }
}

resource "aws_s3_bucket_versioning" "this" {
  for_each = aws_s3_bucket.this
  bucket   = each.value.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_logging" "this" {
  for_each      = { for k, v in aws_s3_bucket.this : k => v if k != "access_logs" }
  bucket        = each.value.id
  target_bucket = aws_s3_bucket.this["access_logs"].id
  target_prefix = "${each.key}/"

  # S3 checks at this call that the target bucket's policy lets the log service write.
  depends_on = [aws_s3_bucket_policy.this]
}

resource "aws_s3_bucket_policy" "this" {
  for_each = aws_s3_bucket.this
  bucket   = each.value.id
  policy   = data.aws_iam_policy_document.bucket[each.key].json

  depends_on = [aws_s3_bucket_public_access_block.this]
}

data "aws_iam_policy_document" "bucket" {
  for_each = local.buckets

  statement {
    sid       = "DenyPlainHttp"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = ["arn:${local.partition}:s3:::${each.value.name}", "arn:${local.partition}:s3:::${each.value.name}/*"]
    principals {
      type        = "AWS" # {"AWS": "*"}: everyone, the same as "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  dynamic "statement" {
    for_each = each.key == "access_logs" ? [1] : []
    content {
      sid       = "S3ServerAccessLogDelivery"
      actions   = ["s3:PutObject"]
      resources = ["arn:${local.partition}:s3:::${each.value.name}/*"]
      principals {
        type        = "Service"
        identifiers = ["logging.s3.amazonaws.com"]
      }
      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [local.account_id]
      }
    }
  }
}

# Lake lifecycle: raw snapshots cool down; each table expires after its retention_days plus
# retention_s3_grace_days (local.lake_retention, generated from the settings by
# infra/scripts/gen_lake_tables.py), a backstop to the `retention` job, which deletes first and
# keeps what a production model's training window names; old object versions and failed
# multipart uploads are cleaned up.
resource "aws_s3_bucket_lifecycle_configuration" "lake" {
  bucket = aws_s3_bucket.this["lake"].id

  rule {
    id     = "raw-tiering"
    status = "Enabled"
    filter {
      prefix = "raw/"
    }
    transition {
      days          = var.raw_to_ia_days
      storage_class = "STANDARD_IA"
    }
  }

  dynamic "rule" {
    for_each = local.lake_retention
    content {
      id     = "expire-${rule.key}"
      status = "Enabled"
      filter {
        prefix = rule.value.prefix
      }
      expiration {
        days = rule.value.expire_days
      }
    }
  }

  rule {
    id     = "old-versions-and-uploads"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expire_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "athena" {
  bucket = aws_s3_bucket.this["athena"].id

  rule {
    id     = "results-expiry"
    status = "Enabled"
    filter {}
    expiration {
      days = var.athena_results_expire_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "access_logs" {
  bucket = aws_s3_bucket.this["access_logs"].id

  rule {
    id     = "logs-tiering"
    status = "Enabled"
    filter {}
    transition {
      days          = 30
      storage_class = "STANDARD_IA"
    }
    expiration {
      days = 365
    }
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expire_days
    }
  }
}
