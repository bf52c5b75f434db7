variable "region" {
  description = "AWS region of the project (the same as the main stack's)."
  type        = string
  default     = "us-east-1"
}

variable "project" {
  description = "Name prefix; the CI roles may only manage resources that carry it."
  type        = string
  default     = "bikeshare"
}

variable "owner" {
  description = "Team that owns the stack, written to the Owner tag."
  type        = string
  default     = "mlops"
}

variable "github_repository" {
  description = "GitHub repository (owner/name) whose workflows may assume the CI roles."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository must look like owner/name."
  }
}

variable "vpc_id" {
  description = "VPC of the main stack; the deploy roles may only create security groups in it."
  type        = string
}
