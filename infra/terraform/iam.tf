# Least-privilege roles of the workloads. Each job kind has its own task role, scoped to the lake
# prefixes it reads and writes; every role carries the boundary made by ./bootstrap and lives under
# the /<project>/ path, the only path the CI deploy role may manage.

locals {
  lake_arn   = aws_s3_bucket.this["lake"].arn
  role_path  = "/${local.name}/"
  log_prefix = "arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:/${local.name}"

  # Lake prefixes each task role may write; every role may read the whole lake, because
  # Lake.connect() scans every table to build its DuckDB views (and the data is public).
  # Each lake table's prefix must be written by some job here (tests/infra checks every table).
  lake_writes = {
    ingest   = ["raw/", "ingest_log/", "quarantine/", "weather/"]
    infer    = ["inference/", "inference_batches/", "forecasts/", "monitoring/quality/"] # infer and actuals
    monitor  = ["monitoring/"]
    pipeline = ["features/", "monitoring/baselines/", "audit/", "weather/"] # includes the staging alias move
    promote  = ["audit/"]                                                   # promote and rollback
  }
  # Task roles that publish custom metrics to CloudWatch (namespace-scoped).
  metric_publishers = toset(["ingest", "infer", "monitor"])
  task_roles        = setunion(keys(local.lake_writes), ["mlflow"])
}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${var.region}:${local.account_id}:*"]
    }
  }
}

# --- task execution: pull the image, write logs ----------------------------------------------
resource "aws_iam_role" "task_execution" {
  name                 = "${local.name}-task-execution"
  path                 = local.role_path
  assume_role_policy   = data.aws_iam_policy_document.ecs_tasks_assume.json
  permissions_boundary = var.workload_permissions_boundary_arn
  tags                 = local.tags
}

data "aws_iam_policy_document" "task_execution" {
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # GetAuthorizationToken has no resource-level permissions
  }
  statement {
    sid       = "PullProjectImage"
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    resources = [aws_ecr_repository.app.arn]
  }
  statement {
    sid       = "WriteJobLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${local.log_prefix}/jobs/*:*"]
  }
}

resource "aws_iam_role_policy" "task_execution" {
  name   = "pull-and-log"
  role   = aws_iam_role.task_execution.id
  policy = data.aws_iam_policy_document.task_execution.json
}

# --- task roles, one per job kind ----------------------------------------------------------
resource "aws_iam_role" "job" {
  for_each             = local.task_roles
  name                 = "${local.name}-job-${each.key}"
  path                 = local.role_path
  assume_role_policy   = data.aws_iam_policy_document.ecs_tasks_assume.json
  permissions_boundary = var.workload_permissions_boundary_arn
  tags                 = local.tags
}

data "aws_iam_policy_document" "lake_job" {
  for_each = local.lake_writes

  statement {
    sid       = "ListLake"
    actions   = ["s3:ListBucket"]
    resources = [local.lake_arn]
  }

  statement {
    sid       = "ReadLake"
    actions   = ["s3:GetObject"]
    resources = ["${local.lake_arn}/*"]
  }

  statement {
    # Lake.write is one PUT on S3; DeleteObject is for Lake.delete_partition (rebuilt partitions).
    sid       = "WriteOwnPrefixes"
    actions   = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = [for p in each.value : "${local.lake_arn}/${p}*"]
  }

  statement {
    sid       = "LakeKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey", "kms:Encrypt"]
    resources = [aws_kms_key.main.arn]
  }

  dynamic "statement" {
    for_each = contains(tolist(local.metric_publishers), each.key) ? [1] : []
    content {
      sid       = "PublishProjectMetrics"
      actions   = ["cloudwatch:PutMetricData"]
      resources = ["*"] # PutMetricData has no resource-level permissions; the namespace is pinned
      condition {
        test     = "StringEquals"
        variable = "cloudwatch:namespace"
        values   = [local.metric_namespace]
      }
    }
  }

  dynamic "statement" {
    for_each = each.key == "infer" ? [1] : []
    content {
      sid       = "InvokeProjectEndpoints"
      actions   = ["sagemaker:InvokeEndpoint"]
      resources = ["arn:${local.partition}:sagemaker:${var.region}:${local.account_id}:endpoint/${local.name}-*"]
    }
  }
}

resource "aws_iam_role_policy" "lake_job" {
  for_each = local.lake_writes
  name     = "lake-${each.key}"
  role     = aws_iam_role.job[each.key].id
  policy   = data.aws_iam_policy_document.lake_job[each.key].json
}

data "aws_iam_policy_document" "mlflow" {
  statement {
    sid       = "MountStoreThroughAccessPoint"
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    resources = [aws_efs_file_system.mlflow.arn]
    condition {
      test     = "StringEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = [aws_efs_access_point.mlflow.arn]
    }
  }
}

resource "aws_iam_role_policy" "mlflow" {
  name   = "mlflow-store"
  role   = aws_iam_role.job["mlflow"].id
  policy = data.aws_iam_policy_document.mlflow.json
}

# --- EventBridge: start the job tasks -------------------------------------------------------
resource "aws_iam_role" "events" {
  name                 = "${local.name}-events-run-task"
  path                 = local.role_path
  permissions_boundary = var.workload_permissions_boundary_arn
  tags                 = local.tags
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Action    = "sts:AssumeRole"
      Principal = { Service = "events.amazonaws.com" }
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  })
}

data "aws_iam_policy_document" "events" {
  statement {
    sid       = "RunJobTasks"
    actions   = ["ecs:RunTask"]
    resources = ["arn:${local.partition}:ecs:${var.region}:${local.account_id}:task-definition/${local.name}-*"]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.main.arn]
    }
  }
  statement {
    sid       = "TagStartedTasks"
    actions   = ["ecs:TagResource"]
    resources = ["arn:${local.partition}:ecs:${var.region}:${local.account_id}:task/${local.name}/*"]
    condition {
      test     = "StringEquals"
      variable = "ecs:CreateAction"
      values   = ["RunTask"]
    }
  }
  statement {
    sid       = "PassJobRoles"
    actions   = ["iam:PassRole"]
    resources = concat([aws_iam_role.task_execution.arn], [for r in aws_iam_role.job : r.arn])
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "events" {
  name   = "run-job-tasks"
  role   = aws_iam_role.events.id
  policy = data.aws_iam_policy_document.events.json
}

# --- SageMaker endpoints --------------------------------------------------------------------
resource "aws_iam_role" "sagemaker" {
  name                 = "${local.name}-sagemaker-endpoint"
  path                 = local.role_path
  permissions_boundary = var.workload_permissions_boundary_arn
  tags                 = local.tags
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Action    = "sts:AssumeRole"
      Principal = { Service = "sagemaker.amazonaws.com" }
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  })
}

data "aws_iam_policy_document" "sagemaker" {
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # no resource-level permissions
  }
  statement {
    sid       = "PullProjectImage"
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    resources = [aws_ecr_repository.app.arn]
  }
  statement {
    sid       = "EndpointLogs"
    actions   = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:/aws/sagemaker/Endpoints/${local.name}-*"]
  }
  statement {
    sid       = "EndpointMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"] # no resource-level permissions; the namespace is pinned
    condition {
      test     = "StringLike"
      variable = "cloudwatch:namespace"
      values   = ["/aws/sagemaker/*", "AWS/SageMaker"]
    }
  }
  statement {
    sid = "VpcNetworkInterfaces"
    actions = [
      "ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface",
      "ec2:DeleteNetworkInterfacePermission", "ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs",
      "ec2:DescribeDhcpOptions", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups",
    ]
    resources = ["*"] # ENI management for vpc_config is not resource-scoped at creation time
  }
  statement {
    sid       = "ReadLakeForTheProductApi" # latest predictions and stations, through Lake.connect()
    actions   = ["s3:GetObject"]
    resources = ["${local.lake_arn}/*"]
  }
  statement {
    sid       = "ListLake"
    actions   = ["s3:ListBucket"]
    resources = [local.lake_arn]
  }
  statement {
    sid       = "ProjectKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [aws_kms_key.main.arn]
  }
  statement {
    sid       = "EncryptedVolumes"
    actions   = ["kms:CreateGrant"]
    resources = [aws_kms_key.main.arn]
    condition {
      test     = "Bool"
      variable = "kms:GrantIsForAWSResource"
      values   = ["true"]
    }
  }
}

resource "aws_iam_role_policy" "sagemaker" {
  name   = "serve"
  role   = aws_iam_role.sagemaker.id
  policy = data.aws_iam_policy_document.sagemaker.json
}
