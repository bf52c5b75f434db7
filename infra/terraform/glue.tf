# The Glue catalog over the lake, with partition projection so Athena needs no crawler and no
# MSCK REPAIR: `city` is an enum of var.cities and `dt` a date at the table's grain (UTC).
# Athena queries should filter on dt; the projection range runs from var.lake_start_date to NOW.

locals {
  dt_projection = {
    minute = { format = "yyyy-MM-dd-HH-mm", unit = "MINUTES", start = "${var.lake_start_date}-00-00" }
    day    = { format = "yyyy-MM-dd", unit = "DAYS", start = var.lake_start_date }
  }
}

resource "aws_glue_catalog_database" "lake" {
  name        = replace("${local.name}_lake", "-", "_")
  description = "Bike-share GBFS lake: raw snapshots, features, inference and monitoring tables."
  tags        = local.tags
}

resource "aws_glue_catalog_table" "lake" {
  for_each = local.lake_tables

  database_name = aws_glue_catalog_database.lake.name
  name          = each.key
  description   = each.value.description
  table_type    = "EXTERNAL_TABLE"

  parameters = {
    EXTERNAL                      = "TRUE"
    classification                = "parquet"
    "projection.enabled"          = "true"
    "projection.city.type"        = "enum"
    "projection.city.values"      = join(",", var.cities)
    "projection.dt.type"          = "date"
    "projection.dt.format"        = local.dt_projection[each.value.grain].format
    "projection.dt.range"         = "${local.dt_projection[each.value.grain].start},NOW"
    "projection.dt.interval"      = "1"
    "projection.dt.interval.unit" = local.dt_projection[each.value.grain].unit
    "storage.location.template"   = "s3://${aws_s3_bucket.this["lake"].id}/${each.value.prefix}/city=$${city}/dt=$${dt}/"
    "has_encrypted_data"          = "true"
  }

  partition_keys {
    name    = "city"
    type    = "string"
    comment = "City key (Settings.city)."
  }

  partition_keys {
    name    = "dt"
    type    = "string"
    comment = "UTC partition at the table's grain (${each.value.grain})."
  }

  storage_descriptor {
    location      = "s3://${aws_s3_bucket.this["lake"].id}/${each.value.prefix}/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"

    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
      parameters = {
        "serialization.format" = "1"
      }
    }

    dynamic "columns" {
      for_each = each.value.columns
      content {
        name = columns.value.name
        type = columns.value.type
      }
    }
  }
}

resource "aws_athena_workgroup" "lake" {
  name          = "${local.name}-lake"
  description   = "Ad-hoc SQL over the lake; results encrypted with the project key."
  force_destroy = false
  tags          = local.tags

  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true
    bytes_scanned_cutoff_per_query     = var.athena_bytes_scanned_cutoff

    result_configuration {
      output_location = "s3://${aws_s3_bucket.this["athena"].id}/results/"

      encryption_configuration {
        encryption_option = "SSE_KMS"
        kms_key_arn       = aws_kms_key.main.arn
      }
    }
  }
}
