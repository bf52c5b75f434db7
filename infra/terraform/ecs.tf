# Jobs run as Fargate tasks of the one image; EventBridge starts them (schedules.tf) and the
# workflows start `pipeline` and `promote` on demand (infra/scripts/run-ecs-task.sh).

resource "aws_ecs_cluster" "main" {
  name = local.name
  tags = local.tags

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "jobs" {
  for_each          = merge(local.jobs, { mlflow = { command = [], role = "mlflow" } })
  name              = "/${local.name}/jobs/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
  tags              = local.tags
}

locals {
  image = "${aws_ecr_repository.app.repository_url}:${var.image_tag}"

  # Settings every job shares (Settings reads BIKESHARE_*); the city comes per run as an override.
  job_environment = [
    { name = "BIKESHARE_LAKE_URI", value = "s3://${aws_s3_bucket.this["lake"].id}" },
    { name = "BIKESHARE_MLFLOW_TRACKING_URI", value = local.mlflow_tracking_uri },
    { name = "BIKESHARE_STATE_DIR", value = "/tmp/bikeshare" },
    { name = "AWS_REGION", value = var.region },
  ]
}

resource "aws_ecs_task_definition" "job" {
  for_each = local.jobs

  family                   = "${local.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.job_cpu[each.key]
  memory                   = var.job_memory[each.key]
  execution_role_arn       = aws_iam_role.task_execution.arn
  task_role_arn            = aws_iam_role.job[each.value.role].arn
  tags                     = local.tags

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  volume {
    name = "tmp"
  }

  container_definitions = jsonencode(concat(
    [{
      name                   = "app"
      image                  = local.image
      essential              = true
      entryPoint             = ["bikeshare"]
      command                = each.value.command
      environment            = local.job_environment
      readonlyRootFilesystem = true
      mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
      dependsOn              = each.value.role == "infer" ? [{ containerName = "sigv4-proxy", condition = "START" }] : []
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.jobs[each.key].name
          awslogs-region        = var.region
          awslogs-stream-prefix = "app"
        }
      }
    }],
    # The infer and actuals jobs reach the SageMaker runtime through a local SigV4 signing sidecar.
    each.value.role == "infer" ? [{
      name      = "sigv4-proxy"
      image     = var.sigv4_proxy_image
      essential = false
      command = [
        "--name", "sagemaker", "--region", var.region,
        "--host", "runtime.sagemaker.${var.region}.amazonaws.com", "--port", ":${local.sigv4_proxy_port}",
      ]
      readonlyRootFilesystem = true
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.jobs[each.key].name
          awslogs-region        = var.region
          awslogs-stream-prefix = "sigv4"
        }
      }
    }] : [],
  ))
}

# --- MLflow tracking server: the registry (aliases staging/production) the jobs and endpoints use.
# SQLite and artifacts on encrypted EFS, one task, served with --serve-artifacts so clients need no
# storage credentials. Reachable only inside the VPC at local.mlflow_tracking_uri.

resource "aws_efs_file_system" "mlflow" {
  creation_token   = "${local.name}-mlflow"
  encrypted        = true
  kms_key_id       = aws_kms_key.main.arn
  performance_mode = "generalPurpose"
  throughput_mode  = "elastic"
  tags             = merge(local.tags, { Name = "${local.name}-mlflow" })

  lifecycle_policy {
    transition_to_ia = "AFTER_30_DAYS"
  }
}

resource "aws_efs_backup_policy" "mlflow" {
  count          = var.mlflow_store_backup ? 1 : 0
  file_system_id = aws_efs_file_system.mlflow.id
  backup_policy {
    status = "ENABLED"
  }
}

resource "aws_efs_mount_target" "mlflow" {
  for_each        = toset(var.private_subnet_ids)
  file_system_id  = aws_efs_file_system.mlflow.id
  subnet_id       = each.value
  security_groups = [aws_security_group.efs.id]
}

resource "aws_efs_access_point" "mlflow" {
  file_system_id = aws_efs_file_system.mlflow.id
  tags           = local.tags

  # The image's user (Dockerfile: useradd --uid 10001 bikeshare).
  posix_user {
    uid = 10001
    gid = 10001
  }

  root_directory {
    path = "/mlflow"
    creation_info {
      owner_uid   = 10001
      owner_gid   = 10001
      permissions = "0750"
    }
  }
}

resource "aws_service_discovery_private_dns_namespace" "main" {
  name        = "${local.name}.internal"
  description = "Private names of the ${local.name} services."
  vpc         = var.vpc_id
  tags        = local.tags
}

resource "aws_service_discovery_service" "mlflow" {
  name = "mlflow"
  tags = local.tags

  dns_config {
    namespace_id   = aws_service_discovery_private_dns_namespace.main.id
    routing_policy = "MULTIVALUE"
    dns_records {
      type = "A"
      ttl  = 10
    }
  }

  health_check_custom_config {
    failure_threshold = 1
  }
}

resource "aws_ecs_task_definition" "mlflow" {
  family                   = "${local.name}-mlflow"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.job_cpu["mlflow"]
  memory                   = var.job_memory["mlflow"]
  execution_role_arn       = aws_iam_role.task_execution.arn
  task_role_arn            = aws_iam_role.job["mlflow"].arn
  tags                     = local.tags

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  volume {
    name = "store"
    efs_volume_configuration {
      file_system_id     = aws_efs_file_system.mlflow.id
      transit_encryption = "ENABLED"
      authorization_config {
        access_point_id = aws_efs_access_point.mlflow.id
        iam             = "ENABLED"
      }
    }
  }

  container_definitions = jsonencode([{
    name       = "mlflow"
    image      = local.image
    essential  = true
    entryPoint = ["mlflow"]
    command = [
      "server", "--host", "0.0.0.0", "--port", tostring(local.mlflow_port),
      "--backend-store-uri", "sqlite:////mnt/mlflow/mlflow.db",
      "--artifacts-destination", "/mnt/mlflow/artifacts", "--serve-artifacts",
      "--allowed-hosts", "${local.mlflow_host}:${local.mlflow_port},${local.mlflow_host}",
      "--workers", "2",
    ]
    portMappings = [{ containerPort = local.mlflow_port, protocol = "tcp" }]
    mountPoints  = [{ sourceVolume = "store", containerPath = "/mnt/mlflow", readOnly = false }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.jobs["mlflow"].name
        awslogs-region        = var.region
        awslogs-stream-prefix = "mlflow"
      }
    }
  }])
}

resource "aws_ecs_service" "mlflow" {
  name                   = "${local.name}-mlflow"
  cluster                = aws_ecs_cluster.main.id
  task_definition        = aws_ecs_task_definition.mlflow.arn
  desired_count          = 1
  launch_type            = "FARGATE"
  enable_execute_command = false
  propagate_tags         = "SERVICE"
  tags                   = local.tags

  # SQLite has one writer: never run two servers on the store at once.
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.mlflow.id]
    assign_public_ip = false
  }

  service_registries {
    registry_arn = aws_service_discovery_service.mlflow.arn
  }

  depends_on = [aws_efs_mount_target.mlflow]
}
