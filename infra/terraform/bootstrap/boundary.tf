# The most any workload role of the main stack may ever do, whatever policy CI attaches to it.
resource "aws_iam_policy" "workload_boundary" {
  name        = "${local.name}-workload-boundary"
  path        = local.ci_path
  description = "Permissions boundary of the ${local.name} job, endpoint and scheduler roles."
  tags        = local.tags

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "LakeObjects"
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListBucket"]
        Resource = ["${local.arn}:s3:::${local.name}-*"]
      },
      {
        Sid       = "ProjectKey"
        Effect    = "Allow"
        Action    = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey", "kms:CreateGrant"]
        Resource  = ["${local.arn}:kms:${local.regional}:key/*"]
        Condition = { StringEquals = { "aws:ResourceTag/Project" = var.project } }
      },
      {
        Sid      = "ImagesAndLogs"
        Effect   = "Allow"
        Action   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability", "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
        Resource = ["${local.arn}:ecr:${local.regional}:repository/${local.name}*", "${local.arn}:logs:${local.regional}:log-group:/${local.name}/*", "${local.arn}:logs:${local.regional}:log-group:/aws/sagemaker/Endpoints/${local.name}-*"]
      },
      {
        Sid      = "NotResourceScoped"
        Effect   = "Allow"
        Action   = ["ecr:GetAuthorizationToken", "cloudwatch:PutMetricData", "ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface", "ec2:DeleteNetworkInterfacePermission", "ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs", "ec2:DescribeDhcpOptions", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups"]
        Resource = "*"
      },
      {
        Sid      = "ProjectEndpointsTasksAndStore"
        Effect   = "Allow"
        Action   = ["sagemaker:InvokeEndpoint", "ecs:RunTask", "ecs:TagResource", "elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
        Resource = ["${local.arn}:sagemaker:${local.regional}:endpoint/${local.name}-*", "${local.arn}:ecs:${local.regional}:task-definition/${local.name}-*", "${local.arn}:ecs:${local.regional}:task/${local.name}/*", "${local.arn}:elasticfilesystem:${local.regional}:file-system/*"]
      },
      {
        Sid      = "PassOnlyWorkloadRoles"
        Effect   = "Allow"
        Action   = "iam:PassRole"
        Resource = "${local.arn}:iam::${local.account_id}:role${local.workload_path}*"
      },
    ]
  })
}
