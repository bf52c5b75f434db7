data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  name       = var.project
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  # Every taggable resource carries these (tests/infra checks it).
  tags = {
    Project    = var.project
    Owner      = var.owner
    ManagedBy  = "terraform"
    Repository = "mlops-bikeshare"
    DataClass  = "public-open-data"
  }

  environments = toset(["staging", "production"])

  # One SageMaker endpoint per city and environment.
  endpoints = {
    for pair in setproduct(var.cities, tolist(local.environments)) :
    "${pair[0]}-${pair[1]}" => { city = pair[0], environment = pair[1] }
  }

  # Jobs that run as Fargate tasks of the one image; `command` follows the `bikeshare` entry point.
  jobs = {
    ingest   = { command = ["ingest", "--once"], role = "ingest" }
    infer    = { command = ["infer", "--once"], role = "infer" }
    actuals  = { command = ["actuals", "--once"], role = "infer" }
    monitor  = { command = ["monitor", "--once"], role = "monitor" }
    pipeline = { command = ["pipeline"], role = "pipeline" }
    promote  = { command = ["--help"], role = "promote" } # always started with promote/rollback args
  }

  # Scheduled (job, city) pairs; `promote` only runs on demand from promote_prod.yml.
  schedules = {
    for pair in setproduct(keys(var.job_schedules), var.cities) :
    "${pair[0]}-${pair[1]}" => { job = pair[0], city = pair[1] }
  }

  lake_bucket        = "${local.name}-lake-${local.account_id}-${var.region}"
  athena_bucket      = "${local.name}-athena-${local.account_id}-${var.region}"
  access_logs_bucket = "${local.name}-s3-logs-${local.account_id}-${var.region}"

  mlflow_port         = 5000
  mlflow_host         = "mlflow.${local.name}.internal"
  mlflow_tracking_uri = "http://${local.mlflow_host}:${local.mlflow_port}"
  sigv4_proxy_port    = 8005
  metric_namespace    = "Bikeshare"
}
