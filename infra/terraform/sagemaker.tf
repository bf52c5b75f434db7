# SageMaker hosting of the serving image (bring-your-own-container: `serve`, port 8080, /ping,
# /invocations). One endpoint per city and environment. The container loads the model that holds
# its registry alias (staging or production) from the MLflow server and hot-swaps when the alias
# moves, so a promotion is an alias move; an image change is an endpoint update (blue/green).

locals {
  endpoint_image = {
    staging    = local.image
    production = "${aws_ecr_repository.app.repository_url}:${aws_ssm_parameter.production_image_tag.insecure_value}"
  }
}

# The image production runs. promote_prod.yml moves it to the tested staging tag; terraform keeps
# whatever value the promotion wrote (ignore_changes), so a staging deploy never touches production.
resource "aws_ssm_parameter" "production_image_tag" {
  name           = "/${local.name}/production/image_tag"
  description    = "ECR tag the production endpoints run; written by the promote_prod workflow."
  type           = "String"
  insecure_value = var.image_tag
  tags           = local.tags

  lifecycle {
    ignore_changes = [insecure_value]
  }
}

resource "aws_sagemaker_model" "endpoint" {
  for_each = local.endpoints

  # Models are immutable: the name follows the image so a new image makes a new model first.
  name               = substr("${local.name}-${each.key}-${sha1(local.endpoint_image[each.value.environment])}", 0, 63)
  execution_role_arn = aws_iam_role.sagemaker.arn
  tags               = merge(local.tags, { City = each.value.city, Environment = each.value.environment })

  primary_container {
    image = local.endpoint_image[each.value.environment]
    mode  = "SingleModel"
    environment = {
      BIKESHARE_CITY                = each.value.city
      BIKESHARE_SERVE_ALIAS         = each.value.environment
      BIKESHARE_SERVE_HOST          = "0.0.0.0"
      BIKESHARE_SERVE_PORT          = "8080"
      BIKESHARE_MLFLOW_TRACKING_URI = local.mlflow_tracking_uri
      BIKESHARE_LAKE_URI            = "s3://${aws_s3_bucket.this["lake"].id}"
      BIKESHARE_STATE_DIR           = "/tmp/bikeshare"
    }
  }

  vpc_config {
    subnets            = var.private_subnet_ids
    security_group_ids = [aws_security_group.endpoints.id]
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_sagemaker_endpoint_configuration" "endpoint" {
  for_each    = local.endpoints
  name_prefix = "${local.name}-${each.key}-"
  kms_key_arn = aws_kms_key.main.arn
  tags        = merge(local.tags, { City = each.value.city, Environment = each.value.environment })

  production_variants {
    variant_name           = "AllTraffic"
    model_name             = aws_sagemaker_model.endpoint[each.key].name
    instance_type          = var.endpoint_instance_type[each.value.environment]
    initial_instance_count = var.endpoint_instance_count[each.value.environment]
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_sagemaker_endpoint" "endpoint" {
  for_each             = local.endpoints
  name                 = "${local.name}-${each.key}"
  endpoint_config_name = aws_sagemaker_endpoint_configuration.endpoint[each.key].name
  tags                 = merge(local.tags, { City = each.value.city, Environment = each.value.environment })

  deployment_config {
    blue_green_update_policy {
      termination_wait_in_seconds          = 300
      maximum_execution_timeout_in_seconds = 3600

      traffic_routing_configuration {
        type                     = "ALL_AT_ONCE"
        wait_interval_in_seconds = 120
      }
    }

    # Roll back an update on its own when the new fleet breaches the critical latency or 5xx alarms.
    auto_rollback_configuration {
      alarms {
        alarm_name = aws_cloudwatch_metric_alarm.endpoint_latency["${each.key}-critical"].alarm_name
      }
      alarms {
        alarm_name = aws_cloudwatch_metric_alarm.endpoint_errors[each.key].alarm_name
      }
    }
  }
}
