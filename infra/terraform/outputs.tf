output "lake_uri" {
  description = "BIKESHARE_LAKE_URI of the deployed jobs."
  value       = "s3://${aws_s3_bucket.this["lake"].id}"
}

output "athena_workgroup" {
  description = "Athena workgroup for SQL over the lake (the cloud twin of `bikeshare sql`)."
  value       = aws_athena_workgroup.lake.name
}

output "glue_database" {
  description = "Glue database that holds one table per lake table."
  value       = aws_glue_catalog_database.lake.name
}

output "ecr_repository_url" {
  description = "Where cd_staging.yml pushes the image (tag = commit SHA)."
  value       = aws_ecr_repository.app.repository_url
}

output "ecs_cluster" {
  description = "Cluster that runs the job tasks and the MLflow server."
  value       = aws_ecs_cluster.main.name
}

output "task_subnets" {
  description = "Subnets for on-demand job tasks (infra/scripts/run-ecs-task.sh)."
  value       = join(",", var.private_subnet_ids)
}

output "task_security_group" {
  description = "Security group for on-demand job tasks."
  value       = aws_security_group.tasks.id
}

output "task_families" {
  description = "ECS task definition family of each job."
  value       = { for k, v in aws_ecs_task_definition.job : k => v.family }
}

output "mlflow_tracking_uri" {
  description = "MLflow tracking URI inside the VPC (BIKESHARE_MLFLOW_TRACKING_URI)."
  value       = local.mlflow_tracking_uri
}

output "endpoints" {
  description = "SageMaker endpoint name of each city and environment."
  value       = { for k, v in aws_sagemaker_endpoint.endpoint : k => v.name }
}

output "production_image_tag_parameter" {
  description = "SSM parameter holding the image tag production runs (written by promote_prod.yml)."
  value       = aws_ssm_parameter.production_image_tag.name
}

output "alert_topics" {
  description = "SNS topic ARN per severity."
  value       = { for k, v in aws_sns_topic.alerts : k => v.arn }
}

output "image_tag" {
  description = "Image tag the staging endpoints and the jobs run (the last cd_staging deploy)."
  value       = var.image_tag
}
