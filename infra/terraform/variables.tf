variable "region" {
  description = "AWS region of every resource."
  type        = string
  default     = "us-east-1"
}

variable "project" {
  description = "Name prefix of every resource; the IAM policies of ./bootstrap scope to it."
  type        = string
  default     = "bikeshare"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,20}$", var.project))
    error_message = "project must be 3-21 lower-case letters, digits or dashes."
  }
}

variable "owner" {
  description = "Team that owns the stack, written to the Owner tag."
  type        = string
  default     = "mlops"
}

variable "cities" {
  description = "City keys served (BIKESHARE_CITY values); each gets schedules, endpoints and alarms."
  type        = list(string)
  default     = ["sf"]

  validation {
    condition     = length(var.cities) > 0 && alltrue([for c in var.cities : can(regex("^[a-z0-9_-]+$", c))])
    error_message = "cities must be a non-empty list of keys matching ^[a-z0-9_-]+$ (as in Settings.city)."
  }
}

variable "image_tag" {
  description = "Tag of the serving/job image in ECR (the git commit SHA); staging endpoints and jobs run it."
  type        = string
}

variable "vpc_id" {
  description = "VPC that runs the ECS tasks, the MLflow server and the SageMaker endpoints."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets (with a NAT route for the GBFS feeds) for tasks and endpoints; two AZs or more."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "give at least two private subnets in different availability zones."
  }
}

variable "workload_permissions_boundary_arn" {
  description = "Permissions boundary every workload role carries (output of ./bootstrap)."
  type        = string
}

variable "lake_start_date" {
  description = "First UTC day of the lake; start of the dt partition projection range (YYYY-MM-DD)."
  type        = string
  default     = "2025-01-01"

  validation {
    condition     = can(regex("^\\d{4}-\\d{2}-\\d{2}$", var.lake_start_date))
    error_message = "lake_start_date must look like YYYY-MM-DD."
  }
}

variable "raw_to_ia_days" {
  description = "Days before raw/ snapshots move to S3 Standard-IA (they expire at retention_days + retention_s3_grace_days)."
  type        = number
  default     = 30
}

variable "noncurrent_version_expire_days" {
  description = "Days an overwritten or deleted object version is kept in the versioned buckets."
  type        = number
  default     = 30
}

variable "athena_results_expire_days" {
  description = "Days Athena query results are kept."
  type        = number
  default     = 7
}

variable "athena_bytes_scanned_cutoff" {
  description = "Largest number of bytes one Athena query may scan in the workgroup (cost guard)."
  type        = number
  default     = 10737418240
}

variable "log_retention_days" {
  description = "Retention of the CloudWatch log groups of jobs and endpoints."
  type        = number
  default     = 30
}

variable "endpoint_instance_type" {
  description = "SageMaker instance type per environment (staging, production)."
  type        = map(string)
  default = {
    staging    = "ml.t2.medium"
    production = "ml.c5.large"
  }
}

variable "endpoint_instance_count" {
  description = "SageMaker instances per endpoint, per environment; two in production spread over AZs."
  type        = map(number)
  default = {
    staging    = 1
    production = 2
  }
}

variable "job_schedules" {
  description = "EventBridge schedule expression of each scheduled job (per city)."
  type        = map(string)
  default = {
    ingest   = "rate(1 minute)"
    infer    = "rate(5 minutes)"
    actuals  = "rate(15 minutes)"
    monitor  = "rate(1 hour)"
    pipeline = "cron(0 3 * * ? *)"
  }
}

variable "job_cpu" {
  description = "Fargate CPU units per job task."
  type        = map(number)
  default = {
    ingest   = 256
    infer    = 512
    actuals  = 256
    monitor  = 512
    pipeline = 2048
    promote  = 256
    mlflow   = 512
  }
}

variable "job_memory" {
  description = "Fargate memory (MiB) per job task."
  type        = map(number)
  default = {
    ingest   = 512
    infer    = 1024
    actuals  = 1024
    monitor  = 2048
    pipeline = 8192
    promote  = 512
    mlflow   = 1024
  }
}

variable "mlflow_store_backup" {
  description = "Daily AWS Backup of the MLflow store (registry, runs, artifacts) on EFS."
  type        = bool
  default     = true
}

variable "sigv4_proxy_image" {
  description = "Signing sidecar that lets the infer job call the SageMaker runtime over plain HTTP (pin a digest in production)."
  type        = string
  default     = "public.ecr.aws/aws-observability/aws-sigv4-proxy:1.7"
}

variable "alert_email" {
  description = "Address subscribed to both alert topics; null for none (subscribe chat or paging tools instead)."
  type        = string
  default     = null
}

# Alert thresholds: the seed's defaults, the same as the monitoring job's built-in rules.
variable "data_delay_warning_s" {
  description = "Data delay (feed last_updated to committed) that raises a warning, in seconds."
  type        = number
  default     = 180
}

variable "data_delay_critical_s" {
  description = "Data delay that raises a critical alert, in seconds; no data at all is critical too."
  type        = number
  default     = 300
}

variable "endpoint_p95_warning_ms" {
  description = "Endpoint P95 model latency that raises a warning, in milliseconds."
  type        = number
  default     = 200
}

variable "endpoint_p95_critical_ms" {
  description = "Endpoint P95 model latency that raises a critical alert, in milliseconds."
  type        = number
  default     = 300
}

variable "inference_failure_rate_critical_pct" {
  description = "Share of failed inference batches over an hour that raises a critical alert, in percent."
  type        = number
  default     = 1
}

variable "psi_warning" {
  description = "Largest feature PSI against the training baseline that raises a warning."
  type        = number
  default     = 0.2
}

variable "psi_critical" {
  description = "Largest feature PSI against the training baseline that raises a critical alert."
  type        = number
  default     = 0.3
}

variable "kpi_min_pr_auc" {
  description = "Online PR-AUC@24h below which model quality alerts (the seed KPI)."
  type        = number
  default     = 0.70
}

variable "kpi_min_f1" {
  description = "Online F1@24h below which model quality alerts (the seed KPI)."
  type        = number
  default     = 0.55
}
