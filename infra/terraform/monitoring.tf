# CloudWatch alarms with the monitoring job's seed thresholds, routed to one SNS topic per severity.
#
# AWS metrics: SageMaker ModelLatency (microseconds) and Invocation5XXErrors per endpoint.
# Custom metrics (namespace "Bikeshare", dimension City; see infra/terraform/README.md) come from the
# jobs: DataDelaySeconds, InferenceBatches, InferenceBatchFailures, FeaturePsiMax (dimension Target
# too), PrAuc24h and F1At24h (dimensions City, Target).

locals {
  severities = toset(["warning", "critical"])
  targets    = toset(["bikes", "docks"])

  data_delay_levels = {
    warning  = var.data_delay_warning_s
    critical = var.data_delay_critical_s
  }
  latency_levels = {
    warning  = var.endpoint_p95_warning_ms
    critical = var.endpoint_p95_critical_ms
  }
  psi_levels = {
    warning  = var.psi_warning
    critical = var.psi_critical
  }

  city_levels      = { for p in setproduct(var.cities, tolist(local.severities)) : "${p[0]}-${p[1]}" => { city = p[0], severity = p[1] } }
  endpoint_levels  = { for p in setproduct(keys(local.endpoints), tolist(local.severities)) : "${p[0]}-${p[1]}" => { endpoint = p[0], severity = p[1] } }
  city_target      = { for p in setproduct(var.cities, tolist(local.targets)) : "${p[0]}-${p[1]}" => { city = p[0], target = p[1] } }
  city_target_psi  = { for p in setproduct(var.cities, tolist(local.targets), tolist(local.severities)) : "${p[0]}-${p[1]}-${p[2]}" => { city = p[0], target = p[1], severity = p[2] } }
  quality_kpis     = { pr_auc = { metric = "PrAuc24h", threshold = var.kpi_min_pr_auc }, f1 = { metric = "F1At24h", threshold = var.kpi_min_f1 } }
  city_target_kpis = { for p in setproduct(keys(local.city_target), keys(local.quality_kpis)) : "${p[0]}-${p[1]}" => merge(local.city_target[p[0]], local.quality_kpis[p[1]]) }
}

resource "aws_sns_topic" "alerts" {
  for_each          = local.severities
  name              = "${local.name}-alerts-${each.key}"
  kms_master_key_id = aws_kms_key.main.arn
  tags              = merge(local.tags, { Severity = each.key })
}

resource "aws_sns_topic_policy" "alerts" {
  for_each = aws_sns_topic.alerts
  arn      = each.value.arn
  policy   = data.aws_iam_policy_document.alerts_topic[each.key].json
}

data "aws_iam_policy_document" "alerts_topic" {
  for_each = local.severities

  statement {
    sid       = "CloudWatchAlarmsOfThisAccount"
    actions   = ["sns:Publish"]
    resources = ["arn:${local.partition}:sns:${var.region}:${local.account_id}:${local.name}-alerts-${each.key}"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_sns_topic_subscription" "email" {
  for_each  = var.alert_email == null ? toset([]) : local.severities
  topic_arn = aws_sns_topic.alerts[each.key].arn
  protocol  = "email"
  endpoint  = var.alert_email
}

resource "aws_cloudwatch_metric_alarm" "data_delay" {
  for_each            = local.city_levels
  alarm_name          = "${local.name}-${each.value.city}-data-delay-${each.value.severity}"
  alarm_description   = "Feed data delay over ${local.data_delay_levels[each.value.severity]} s (runbook: docs/monitoring_runbook.md, data delay)."
  namespace           = local.metric_namespace
  metric_name         = "DataDelaySeconds"
  dimensions          = { City = each.value.city }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = local.data_delay_levels[each.value.severity]
  # No data means ingest stopped: a dead feed is critical, not silent.
  treat_missing_data = each.value.severity == "critical" ? "breaching" : "notBreaching"
  alarm_actions      = [aws_sns_topic.alerts[each.value.severity].arn]
  ok_actions         = [aws_sns_topic.alerts[each.value.severity].arn]
  tags               = merge(local.tags, { Severity = each.value.severity, City = each.value.city })
}

resource "aws_cloudwatch_metric_alarm" "endpoint_latency" {
  for_each            = local.endpoint_levels
  alarm_name          = "${local.name}-${each.value.endpoint}-p95-${each.value.severity}"
  alarm_description   = "Endpoint P95 model latency over ${local.latency_levels[each.value.severity]} ms."
  namespace           = "AWS/SageMaker"
  metric_name         = "ModelLatency"
  dimensions          = { EndpointName = "${local.name}-${each.value.endpoint}", VariantName = "AllTraffic" }
  extended_statistic  = "p95"
  period              = 300
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = local.latency_levels[each.value.severity] * 1000 # ModelLatency is in microseconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts[each.value.severity].arn]
  ok_actions          = [aws_sns_topic.alerts[each.value.severity].arn]
  tags                = merge(local.tags, { Severity = each.value.severity })
}

resource "aws_cloudwatch_metric_alarm" "endpoint_errors" {
  for_each            = local.endpoints
  alarm_name          = "${local.name}-${each.key}-5xx-critical"
  alarm_description   = "The endpoint answered 5xx (the API answers bad input with 4xx, never 5xx)."
  namespace           = "AWS/SageMaker"
  metric_name         = "Invocation5XXErrors"
  dimensions          = { EndpointName = "${local.name}-${each.key}", VariantName = "AllTraffic" }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 5
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts["critical"].arn]
  ok_actions          = [aws_sns_topic.alerts["critical"].arn]
  tags                = merge(local.tags, { Severity = "critical" })
}

resource "aws_cloudwatch_metric_alarm" "inference_failure_rate" {
  for_each            = toset(var.cities)
  alarm_name          = "${local.name}-${each.key}-inference-failure-rate-critical"
  alarm_description   = "More than ${var.inference_failure_rate_critical_pct}% of inference batches failed over the last hour."
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.inference_failure_rate_critical_pct
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts["critical"].arn]
  ok_actions          = [aws_sns_topic.alerts["critical"].arn]
  tags                = merge(local.tags, { Severity = "critical", City = each.key })

  metric_query {
    id          = "rate"
    expression  = "IF(batches > 0, 100 * failures / batches, 0)"
    label       = "Failed inference batches (%)"
    return_data = true
  }

  metric_query {
    id = "failures"
    metric {
      namespace   = local.metric_namespace
      metric_name = "InferenceBatchFailures"
      dimensions  = { City = each.key }
      stat        = "Sum"
      period      = 3600
    }
  }

  metric_query {
    id = "batches"
    metric {
      namespace   = local.metric_namespace
      metric_name = "InferenceBatches"
      dimensions  = { City = each.key }
      stat        = "Sum"
      period      = 3600
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "psi" {
  for_each            = local.city_target_psi
  alarm_name          = "${local.name}-${each.value.city}-${each.value.target}-psi-${each.value.severity}"
  alarm_description   = "Largest feature PSI against the training baseline over ${local.psi_levels[each.value.severity]}."
  namespace           = local.metric_namespace
  metric_name         = "FeaturePsiMax"
  dimensions          = { City = each.value.city, Target = each.value.target }
  statistic           = "Maximum"
  period              = 3600
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = local.psi_levels[each.value.severity]
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts[each.value.severity].arn]
  ok_actions          = [aws_sns_topic.alerts[each.value.severity].arn]
  tags                = merge(local.tags, { Severity = each.value.severity, City = each.value.city })
}

resource "aws_cloudwatch_metric_alarm" "model_quality" {
  for_each            = local.city_target_kpis
  alarm_name          = "${local.name}-${each.key}-below-kpi-warning"
  alarm_description   = "Online ${each.value.metric} of the production ${each.value.target} model under the KPI ${each.value.threshold}."
  namespace           = local.metric_namespace
  metric_name         = each.value.metric
  dimensions          = { City = each.value.city, Target = each.value.target }
  statistic           = "Minimum"
  period              = 3600
  evaluation_periods  = 1
  comparison_operator = "LessThanThreshold"
  threshold           = each.value.threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts["warning"].arn]
  ok_actions          = [aws_sns_topic.alerts["warning"].arn]
  tags                = merge(local.tags, { Severity = "warning", City = each.value.city })
}
