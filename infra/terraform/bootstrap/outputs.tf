output "state_bucket" {
  description = "Remote state bucket: the TF_STATE_BUCKET variable of the GitHub repository."
  value       = aws_s3_bucket.state.id
}

output "staging_role_arn" {
  description = "AWS_ROLE_ARN variable of the GitHub environment `staging`."
  value       = aws_iam_role.github["staging"].arn
}

output "production_role_arn" {
  description = "AWS_ROLE_ARN variable of the GitHub environment `production`."
  value       = aws_iam_role.github["production"].arn
}

output "workload_permissions_boundary_arn" {
  description = "Pass to the main stack as workload_permissions_boundary_arn."
  value       = aws_iam_policy.workload_boundary.arn
}
