# GitHub Actions authenticate with OIDC: no long-lived AWS keys exist anywhere. A workflow job gets
# a role only when it runs in the matching GitHub environment of this repository (the `sub` claim),
# so production credentials need the production environment's required reviewers.

resource "aws_iam_openid_connect_provider" "github" {
  url            = "https://token.actions.githubusercontent.com"
  client_id_list = ["sts.amazonaws.com"]
  tags           = local.tags
}

locals {
  ci_environments = toset(["staging", "production"])
  ci_path         = "/${local.name}-ci/"
  workload_path   = "/${local.name}/"
}

data "aws_iam_policy_document" "github_assume" {
  for_each = local.ci_environments

  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.github.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:sub"
      values   = ["repo:${var.github_repository}:environment:${each.key}"]
    }
  }
}

resource "aws_iam_role" "github" {
  for_each             = local.ci_environments
  name                 = "${local.name}-github-${each.key}"
  path                 = local.ci_path
  description          = "Assumed by GitHub Actions jobs of ${var.github_repository} in the ${each.key} environment."
  assume_role_policy   = data.aws_iam_policy_document.github_assume[each.key].json
  max_session_duration = 3600
  tags                 = merge(local.tags, { Environment = each.key })
}

resource "aws_iam_policy" "deploy" {
  name        = "${local.name}-ci-terraform-apply"
  path        = local.ci_path
  description = "Plan and apply the main stack: project-prefixed resources only."
  policy      = data.aws_iam_policy_document.deploy.json
  tags        = local.tags
}

resource "aws_iam_role_policy_attachment" "deploy" {
  for_each   = aws_iam_role.github
  role       = each.value.name
  policy_arn = aws_iam_policy.deploy.arn
}

resource "aws_iam_role_policy" "staging" {
  name   = "push-image-and-train"
  role   = aws_iam_role.github["staging"].id
  policy = data.aws_iam_policy_document.staging.json
}

resource "aws_iam_role_policy" "production" {
  name   = "promote-and-roll-back"
  role   = aws_iam_role.github["production"].id
  policy = data.aws_iam_policy_document.production.json
}

# What `terraform plan/apply` of the main stack needs, scoped to the project's names.
data "aws_iam_policy_document" "deploy" {
  statement {
    sid       = "State"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.state.arn}/*"]
  }
  statement {
    sid       = "StateList"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.state.arn]
  }
  statement {
    sid       = "ReadOnlyDescribe"
    actions   = ["ec2:Describe*", "sts:GetCallerIdentity", "ecs:DescribeTaskDefinition", "ecs:DeregisterTaskDefinition", "ecs:RegisterTaskDefinition", "kms:ListAliases", "servicediscovery:GetOperation", "servicediscovery:ListNamespaces", "elasticfilesystem:Describe*", "cloudwatch:DescribeAlarms", "logs:DescribeLogGroups", "ssm:DescribeParameters"]
    resources = ["*"] # these actions have no resource-level permissions
  }
  statement {
    sid       = "ProjectBuckets"
    actions   = ["s3:*"]
    resources = ["${local.arn}:s3:::${local.name}-*"] # bucket-level only: no object ARNs here
  }
  statement {
    sid       = "CreateProjectKey"
    actions   = ["kms:CreateKey", "kms:TagResource"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/Project"
      values   = [var.project]
    }
  }
  statement {
    sid       = "ManageProjectKey"
    actions   = ["kms:DescribeKey", "kms:GetKeyPolicy", "kms:PutKeyPolicy", "kms:GetKeyRotationStatus", "kms:EnableKeyRotation", "kms:ListResourceTags", "kms:TagResource", "kms:UntagResource", "kms:ScheduleKeyDeletion", "kms:CreateGrant", "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]
    resources = ["${local.arn}:kms:${local.regional}:key/*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/Project"
      values   = [var.project]
    }
  }
  statement {
    sid       = "ProjectKeyAlias"
    actions   = ["kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias"]
    resources = ["${local.arn}:kms:${local.regional}:alias/${local.name}*", "${local.arn}:kms:${local.regional}:key/*"]
  }
  statement {
    sid       = "Glue"
    actions   = ["glue:CreateDatabase", "glue:GetDatabase", "glue:UpdateDatabase", "glue:DeleteDatabase", "glue:CreateTable", "glue:GetTable", "glue:GetTables", "glue:UpdateTable", "glue:DeleteTable", "glue:GetTags", "glue:TagResource", "glue:UntagResource"]
    resources = ["${local.arn}:glue:${local.regional}:catalog", "${local.arn}:glue:${local.regional}:database/${local.name}*", "${local.arn}:glue:${local.regional}:table/${local.name}*/*", "${local.arn}:glue:${local.regional}:userDefinedFunction/${local.name}*/*"]
  }
  statement {
    sid       = "Athena"
    actions   = ["athena:CreateWorkGroup", "athena:GetWorkGroup", "athena:UpdateWorkGroup", "athena:DeleteWorkGroup", "athena:TagResource", "athena:UntagResource", "athena:ListTagsForResource"]
    resources = ["${local.arn}:athena:${local.regional}:workgroup/${local.name}-*"]
  }
  statement {
    sid       = "EcrRepository"
    actions   = ["ecr:CreateRepository", "ecr:DescribeRepositories", "ecr:DeleteRepository", "ecr:PutLifecyclePolicy", "ecr:GetLifecyclePolicy", "ecr:DeleteLifecyclePolicy", "ecr:PutImageScanningConfiguration", "ecr:PutImageTagMutability", "ecr:TagResource", "ecr:UntagResource", "ecr:ListTagsForResource", "ecr:GetRepositoryPolicy"]
    resources = ["${local.arn}:ecr:${local.regional}:repository/${local.name}*"]
  }
  statement {
    sid       = "SageMakerHosting"
    actions   = ["sagemaker:CreateModel", "sagemaker:DescribeModel", "sagemaker:DeleteModel", "sagemaker:CreateEndpointConfig", "sagemaker:DescribeEndpointConfig", "sagemaker:DeleteEndpointConfig", "sagemaker:CreateEndpoint", "sagemaker:DescribeEndpoint", "sagemaker:UpdateEndpoint", "sagemaker:DeleteEndpoint", "sagemaker:AddTags", "sagemaker:DeleteTags", "sagemaker:ListTags"]
    resources = ["${local.arn}:sagemaker:${local.regional}:model/${local.name}-*", "${local.arn}:sagemaker:${local.regional}:endpoint-config/${local.name}-*", "${local.arn}:sagemaker:${local.regional}:endpoint/${local.name}-*"]
  }
  statement {
    sid       = "EcsClusterAndServices"
    actions   = ["ecs:CreateCluster", "ecs:DescribeClusters", "ecs:UpdateCluster", "ecs:UpdateClusterSettings", "ecs:DeleteCluster", "ecs:CreateService", "ecs:UpdateService", "ecs:DeleteService", "ecs:DescribeServices", "ecs:TagResource", "ecs:UntagResource", "ecs:ListTagsForResource"]
    resources = ["${local.arn}:ecs:${local.regional}:cluster/${local.name}", "${local.arn}:ecs:${local.regional}:service/${local.name}/*", "${local.arn}:ecs:${local.regional}:task-definition/${local.name}-*"]
  }
  statement {
    sid       = "EfsCreate"
    actions   = ["elasticfilesystem:CreateFileSystem", "elasticfilesystem:TagResource"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/Project"
      values   = [var.project]
    }
  }
  statement {
    sid       = "EfsManage"
    actions   = ["elasticfilesystem:DeleteFileSystem", "elasticfilesystem:CreateMountTarget", "elasticfilesystem:DeleteMountTarget", "elasticfilesystem:CreateAccessPoint", "elasticfilesystem:DeleteAccessPoint", "elasticfilesystem:PutLifecycleConfiguration", "elasticfilesystem:PutBackupPolicy", "elasticfilesystem:TagResource", "elasticfilesystem:UntagResource", "elasticfilesystem:ListTagsForResource"]
    resources = ["${local.arn}:elasticfilesystem:${local.regional}:file-system/*", "${local.arn}:elasticfilesystem:${local.regional}:access-point/*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/Project"
      values   = [var.project]
    }
  }
  statement {
    sid       = "SecurityGroupsInProjectVpc"
    actions   = ["ec2:CreateSecurityGroup"]
    resources = ["${local.arn}:ec2:${local.regional}:vpc/${var.vpc_id}", "${local.arn}:ec2:${local.regional}:security-group/*"]
  }
  statement {
    sid       = "SecurityGroupRules"
    actions   = ["ec2:DeleteSecurityGroup", "ec2:AuthorizeSecurityGroupIngress", "ec2:AuthorizeSecurityGroupEgress", "ec2:RevokeSecurityGroupIngress", "ec2:RevokeSecurityGroupEgress", "ec2:ModifySecurityGroupRules", "ec2:UpdateSecurityGroupRuleDescriptionsIngress", "ec2:UpdateSecurityGroupRuleDescriptionsEgress", "ec2:CreateTags", "ec2:DeleteTags"]
    resources = ["${local.arn}:ec2:${local.regional}:security-group/*", "${local.arn}:ec2:${local.regional}:security-group-rule/*"]
    condition {
      test     = "StringEquals"
      variable = "ec2:Vpc"
      values   = ["${local.arn}:ec2:${local.regional}:vpc/${var.vpc_id}"]
    }
  }
  statement {
    sid       = "ServiceDiscovery"
    actions   = ["servicediscovery:CreatePrivateDnsNamespace", "servicediscovery:CreateService", "servicediscovery:GetNamespace", "servicediscovery:GetService", "servicediscovery:UpdateService", "servicediscovery:DeleteService", "servicediscovery:DeleteNamespace", "servicediscovery:TagResource", "servicediscovery:UntagResource", "servicediscovery:ListTagsForResource", "route53:CreateHostedZone", "route53:GetHostedZone", "route53:DeleteHostedZone", "route53:ListHostedZonesByName", "route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets", "route53:GetChange"]
    resources = ["*"] # namespace creation is not resource-scoped; Cloud Map makes the hosted zone
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogGroup", "logs:DeleteLogGroup", "logs:PutRetentionPolicy", "logs:AssociateKmsKey", "logs:DisassociateKmsKey", "logs:TagResource", "logs:UntagResource", "logs:ListTagsForResource", "logs:TagLogGroup"]
    resources = ["${local.arn}:logs:${local.regional}:log-group:/${local.name}/*"]
  }
  statement {
    sid       = "AlarmsAndTopics"
    actions   = ["cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms", "cloudwatch:TagResource", "cloudwatch:UntagResource", "cloudwatch:ListTagsForResource", "sns:CreateTopic", "sns:DeleteTopic", "sns:GetTopicAttributes", "sns:SetTopicAttributes", "sns:Subscribe", "sns:Unsubscribe", "sns:GetSubscriptionAttributes", "sns:TagResource", "sns:UntagResource", "sns:ListTagsForResource"]
    resources = ["${local.arn}:cloudwatch:${local.regional}:alarm:${local.name}-*", "${local.arn}:sns:${local.regional}:${local.name}-*"]
  }
  statement {
    sid       = "Schedules"
    actions   = ["events:PutRule", "events:DeleteRule", "events:DescribeRule", "events:EnableRule", "events:DisableRule", "events:PutTargets", "events:RemoveTargets", "events:ListTargetsByRule", "events:TagResource", "events:UntagResource", "events:ListTagsForResource"]
    resources = ["${local.arn}:events:${local.regional}:rule/${local.name}-*"]
  }
  statement {
    sid       = "ProductionImageParameter"
    actions   = ["ssm:PutParameter", "ssm:GetParameter", "ssm:GetParameters", "ssm:DeleteParameter", "ssm:AddTagsToResource", "ssm:RemoveTagsFromResource", "ssm:ListTagsForResource"]
    resources = ["${local.arn}:ssm:${local.regional}:parameter/${local.name}/*"]
  }
  statement {
    sid       = "WorkloadRoles"
    actions   = ["iam:GetRole", "iam:UpdateRole", "iam:UpdateAssumeRolePolicy", "iam:DeleteRole", "iam:TagRole", "iam:UntagRole", "iam:PutRolePolicy", "iam:GetRolePolicy", "iam:DeleteRolePolicy", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies", "iam:ListInstanceProfilesForRole", "iam:PassRole"]
    resources = ["${local.arn}:iam::${local.account_id}:role${local.workload_path}*"]
  }
  statement {
    sid       = "CreateWorkloadRolesOnlyWithBoundary"
    actions   = ["iam:CreateRole", "iam:PutRolePermissionsBoundary"]
    resources = ["${local.arn}:iam::${local.account_id}:role${local.workload_path}*"]
    condition {
      test     = "StringEquals"
      variable = "iam:PermissionsBoundary"
      values   = [aws_iam_policy.workload_boundary.arn]
    }
  }
  statement {
    sid       = "ServiceLinkedRoles"
    actions   = ["iam:CreateServiceLinkedRole"]
    resources = ["${local.arn}:iam::${local.account_id}:role/aws-service-role/*"]
    condition {
      test     = "StringEquals"
      variable = "iam:AWSServiceName"
      values   = ["ecs.amazonaws.com", "sagemaker.amazonaws.com", "elasticfilesystem.amazonaws.com"]
    }
  }
}

# Staging: push the image and run the training pipeline task.
data "aws_iam_policy_document" "staging" {
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # no resource-level permissions
  }
  statement {
    sid       = "PushImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage", "ecr:BatchGetImage", "ecr:DescribeImages"]
    resources = ["${local.arn}:ecr:${local.regional}:repository/${local.name}"]
  }
  statement {
    sid       = "RunPipelineTask"
    actions   = ["ecs:RunTask"]
    resources = ["${local.arn}:ecs:${local.regional}:task-definition/${local.name}-pipeline:*"]
  }
  statement {
    sid       = "WatchTasks"
    actions   = ["ecs:DescribeTasks", "logs:GetLogEvents"]
    resources = ["${local.arn}:ecs:${local.regional}:task/${local.name}/*", "${local.arn}:logs:${local.regional}:log-group:/${local.name}/jobs/*:*"]
  }
}

# Production: run the promote/rollback task and move the image production runs.
data "aws_iam_policy_document" "production" {
  statement {
    sid       = "RunPromoteTask"
    actions   = ["ecs:RunTask"]
    resources = ["${local.arn}:ecs:${local.regional}:task-definition/${local.name}-promote:*"]
  }
  statement {
    sid       = "WatchTasks"
    actions   = ["ecs:DescribeTasks", "logs:GetLogEvents"]
    resources = ["${local.arn}:ecs:${local.regional}:task/${local.name}/*", "${local.arn}:logs:${local.regional}:log-group:/${local.name}/jobs/*:*"]
  }
  statement {
    sid       = "ProductionImageHistory"
    actions   = ["ssm:GetParameterHistory"]
    resources = ["${local.arn}:ssm:${local.regional}:parameter/${local.name}/production/*"]
  }
  statement {
    sid       = "ImageExists"
    actions   = ["ecr:DescribeImages"]
    resources = ["${local.arn}:ecr:${local.regional}:repository/${local.name}"]
  }
}
