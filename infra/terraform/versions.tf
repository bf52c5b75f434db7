terraform {
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.90, < 6.0"
    }
  }

  # Partial configuration: bucket, key and region come from `terraform init -backend-config=...`
  # (see .github/workflows/cd_staging.yml). The state bucket is made by ./bootstrap.
  backend "s3" {
    encrypt      = true
    use_lockfile = true
  }
}

provider "aws" {
  region = var.region
}
