# Security groups only: the VPC and its private subnets (with NAT for the public GBFS feeds) are inputs.

resource "aws_security_group" "tasks" {
  name        = "${local.name}-tasks"
  description = "Scheduled job tasks: egress to HTTPS and to the MLflow server only."
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${local.name}-tasks" })
}

resource "aws_security_group" "endpoints" {
  name        = "${local.name}-endpoints"
  description = "SageMaker endpoint containers: egress to HTTPS and to the MLflow server only."
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${local.name}-endpoints" })
}

resource "aws_security_group" "mlflow" {
  name        = "${local.name}-mlflow"
  description = "MLflow tracking server: reachable from tasks and endpoints on its port."
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${local.name}-mlflow" })
}

resource "aws_security_group" "efs" {
  name        = "${local.name}-efs"
  description = "MLflow store on EFS: NFS from the MLflow server only."
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${local.name}-efs" })
}

resource "aws_vpc_security_group_egress_rule" "https" {
  for_each          = { tasks = aws_security_group.tasks.id, endpoints = aws_security_group.endpoints.id, mlflow = aws_security_group.mlflow.id }
  security_group_id = each.value
  description       = "HTTPS to AWS APIs and the public GBFS/Meteostat feeds"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
  tags              = local.tags
}

resource "aws_vpc_security_group_egress_rule" "to_mlflow" {
  for_each                     = { tasks = aws_security_group.tasks.id, endpoints = aws_security_group.endpoints.id }
  security_group_id            = each.value
  description                  = "MLflow tracking server"
  ip_protocol                  = "tcp"
  from_port                    = local.mlflow_port
  to_port                      = local.mlflow_port
  referenced_security_group_id = aws_security_group.mlflow.id
  tags                         = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "mlflow_from" {
  for_each                     = { tasks = aws_security_group.tasks.id, endpoints = aws_security_group.endpoints.id }
  security_group_id            = aws_security_group.mlflow.id
  description                  = "MLflow clients: ${each.key}"
  ip_protocol                  = "tcp"
  from_port                    = local.mlflow_port
  to_port                      = local.mlflow_port
  referenced_security_group_id = each.value
  tags                         = local.tags
}

resource "aws_vpc_security_group_egress_rule" "mlflow_to_efs" {
  security_group_id            = aws_security_group.mlflow.id
  description                  = "NFS to the MLflow store"
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
  referenced_security_group_id = aws_security_group.efs.id
  tags                         = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "efs_from_mlflow" {
  security_group_id            = aws_security_group.efs.id
  description                  = "NFS from the MLflow server"
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
  referenced_security_group_id = aws_security_group.mlflow.id
  tags                         = local.tags
}
