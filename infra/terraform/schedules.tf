# EventBridge starts each scheduled job for each city: ingest every minute, infer every 5 minutes,
# actuals every 15, monitor hourly, the retraining pipeline daily (var.job_schedules).

resource "aws_cloudwatch_event_rule" "job" {
  for_each            = local.schedules
  name                = "${local.name}-${each.key}"
  description         = "Runs `bikeshare ${join(" ", local.jobs[each.value.job].command)}` for ${each.value.city}."
  schedule_expression = var.job_schedules[each.value.job]
  state               = "ENABLED"
  tags                = local.tags
}

resource "aws_cloudwatch_event_target" "job" {
  for_each  = local.schedules
  rule      = aws_cloudwatch_event_rule.job[each.key].name
  target_id = "ecs-${each.key}"
  arn       = aws_ecs_cluster.main.arn
  role_arn  = aws_iam_role.events.arn

  ecs_target {
    task_definition_arn     = aws_ecs_task_definition.job[each.value.job].arn_without_revision
    task_count              = 1
    launch_type             = "FARGATE"
    platform_version        = "LATEST"
    propagate_tags          = "TASK_DEFINITION"
    enable_ecs_managed_tags = true

    network_configuration {
      subnets          = var.private_subnet_ids
      security_groups  = [aws_security_group.tasks.id]
      assign_public_ip = false
    }
  }

  retry_policy {
    maximum_event_age_in_seconds = 300
    maximum_retry_attempts       = 2
  }

  input = jsonencode({
    containerOverrides = [{
      name = "app"
      environment = [
        { name = "BIKESHARE_CITY", value = each.value.city },
        # The production endpoint of this city, through the signing sidecar (used by infer/actuals).
        { name = "BIKESHARE_ENDPOINT_URL", value = "http://127.0.0.1:${local.sigv4_proxy_port}/endpoints/${local.name}-${each.value.city}-production" },
      ]
    }]
  })
}
