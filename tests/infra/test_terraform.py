"""Terraform under infra/terraform: parsed with python-hcl2, checked against our policies, and
cross-checked with the code it deploys (lake layout, settings, thresholds, CLI)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import tfpolicy

from bikeshare.lake.store import partition_value
from bikeshare.lake.tables import ALL_TABLES, Grain
from bikeshare.settings import Settings

REPO = Path(__file__).resolve().parents[2]
TF_ROOT = REPO / "infra" / "terraform"
RESOURCE_TYPES = Path(__file__).resolve().parent / "aws_resource_types.json"
PLUGIN_DIR = Path(os.environ.get("BIKESHARE_TF_PLUGIN_DIR", "/opt/tf-plugins"))


@pytest.fixture
def modules(tf_modules: list[tfpolicy.Module]) -> list[tfpolicy.Module]:
    return tf_modules


def _write(tmp_path: Path, text: str) -> list[tfpolicy.Module]:
    (tmp_path / "main.tf").write_text(text, encoding="utf-8")
    return tfpolicy.load_dir(tmp_path)


def _rules(findings: list[tfpolicy.Finding]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for finding in findings:
        out.setdefault(finding.address, set()).add(finding.rule)
    return out


def _locals(modules: list[tfpolicy.Module]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for module in modules:
        for entry in module.body.get("locals", []):
            merged.update({k: v for k, v in entry.items() if k != "__is_block__"})
    return merged


def _variable_defaults(modules: list[tfpolicy.Module]) -> dict[str, Any]:
    defaults: dict[str, Any] = {}
    for module in modules:
        if module.path.parent != TF_ROOT:
            continue
        for entry in module.body.get("variable", []):
            for name, body in entry.items():
                defaults[name] = body.get("default")
    return defaults


def _resource(modules: list[tfpolicy.Module], type_: str, name: str) -> dict[str, Any]:
    for block in tfpolicy.blocks(modules):
        if block.type == type_ and block.name == name:
            return block.body
    raise AssertionError(f"{type_}.{name} is missing")


# --- the real stacks pass every policy ----------------------------------------------------------


def test_every_tf_file_parses(modules: list[tfpolicy.Module]) -> None:
    files = {p for p in TF_ROOT.rglob("*.tf") if ".terraform" not in p.parts}
    assert {m.path for m in modules} == files
    assert {p.parent.name for p in files} == {"terraform", "bootstrap"}


def test_stacks_pass_every_policy(modules: list[tfpolicy.Module]) -> None:
    findings = tfpolicy.check_modules(modules, RESOURCE_TYPES)
    assert not findings, "\n".join(map(str, findings))


def test_checkers_see_the_stack(modules: list[tfpolicy.Module]) -> None:
    """Guards against a checker passing because it found nothing to check."""
    resource_types = {b.type for b in tfpolicy.blocks(modules)}
    assert {"aws_s3_bucket", "aws_iam_role", "aws_kms_key", "aws_sagemaker_endpoint"} <= resource_types
    documents = [b for b in tfpolicy.blocks(modules, "data") if b.type == "aws_iam_policy_document"]
    assert sum(len(list(tfpolicy._document_statements(d.body))) for d in documents) > 30
    inline = [s for b in tfpolicy.blocks(modules) for s in tfpolicy._policy_statements(b.body)]
    assert len(inline) >= 5


# --- each checker flags a deliberately bad snippet ----------------------------------------------

BAD_IAM = """
data "aws_iam_policy_document" "admin" {
  statement {
    actions   = ["*"]
    resources = ["*"]
  }
}
data "aws_iam_policy_document" "fine" {
  statement {
    effect    = "Deny"
    actions   = ["*"]
    resources = ["*"]
  }
  statement {
    actions   = ["s3:GetObject"]
    resources = ["arn:aws:s3:::b/*"]
  }
}
resource "aws_iam_role_policy" "inline_admin" {
  role = "r"
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "*", Resource = "*" }]
  })
}
resource "aws_iam_policy" "not_action" {
  name = "n"
  tags = local.tags
  policy = jsonencode({
    Statement = [{ Effect = "Allow", NotAction = ["iam:*"], Resource = "*" }]
  })
}
resource "aws_s3_bucket_policy" "public" {
  bucket = "b"
  policy = jsonencode({
    Statement = [{ Effect = "Allow", Principal = "*", Action = "s3:GetObject", Resource = "arn:aws:s3:::b/*" }]
  })
}
"""


def test_iam_checker_flags_wildcards_and_public_grants(tmp_path: Path) -> None:
    rules = _rules(tfpolicy.iam_findings(_write(tmp_path, BAD_IAM)))
    assert rules == {
        "data.aws_iam_policy_document.admin": {"IAM001"},
        "aws_iam_role_policy.inline_admin": {"IAM001"},
        "aws_iam_policy.not_action": {"IAM002"},
        "aws_s3_bucket_policy.public": {"IAM004"},
    }


BAD_BUCKETS = """
resource "aws_s3_bucket" "plain" {
  bucket = "plain"
  tags   = local.tags
}
resource "aws_s3_bucket" "half_blocked" {
  bucket = "half"
  tags   = local.tags
}
resource "aws_s3_bucket_server_side_encryption_configuration" "half" {
  bucket = aws_s3_bucket.half_blocked.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "aws:kms"
    }
  }
}
resource "aws_s3_bucket_public_access_block" "half" {
  bucket                  = aws_s3_bucket.half_blocked.id
  block_public_acls       = true
  block_public_policy     = false
  ignore_public_acls      = true
  restrict_public_buckets = true
}
resource "aws_s3_bucket_acl" "half" {
  bucket = aws_s3_bucket.half_blocked.id
  acl    = "public-read"
}
resource "aws_s3_bucket" "good" {
  for_each = { a = "good-a" }
  bucket   = each.value
  tags     = local.tags
}
resource "aws_s3_bucket_server_side_encryption_configuration" "good" {
  for_each = aws_s3_bucket.good
  bucket   = each.value.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}
resource "aws_s3_bucket_public_access_block" "good" {
  for_each                = aws_s3_bucket.good
  bucket                  = each.value.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}
"""


def test_bucket_checker_flags_unencrypted_and_public_buckets(tmp_path: Path) -> None:
    rules = _rules(tfpolicy.bucket_findings(_write(tmp_path, BAD_BUCKETS)))
    assert rules == {
        "aws_s3_bucket.plain": {"S3001", "S3002"},
        "aws_s3_bucket.half_blocked": {"S3002", "S3003"},
    }


BAD_TAGS = """
resource "aws_sns_topic" "untagged" {
  name = "t"
}
resource "aws_sns_topic" "own_tags" {
  name = "t"
  tags = { Team = "x" }
}
resource "aws_sns_topic" "merged" {
  name = "t"
  tags = merge(local.tags, { Severity = "critical" })
}
resource "aws_kms_alias" "untaggable" {
  name          = "alias/x"
  target_key_id = "k"
}
resource "aws_s3_buckett" "typo" {
  bucket = "x"
}
"""


def test_tag_checker_flags_untagged_and_unknown_resources(tmp_path: Path) -> None:
    taggable, untaggable = tfpolicy.load_resource_types(RESOURCE_TYPES)
    findings = tfpolicy.tag_findings(_write(tmp_path, BAD_TAGS), taggable=taggable, untaggable=untaggable)
    assert _rules(findings) == {
        "aws_sns_topic.untagged": {"TAG001"},
        "aws_sns_topic.own_tags": {"TAG002"},
        "aws_s3_buckett.typo": {"TAG003"},
    }


def test_description_checker_flags_undocumented_variables(tmp_path: Path) -> None:
    modules = _write(
        tmp_path,
        'variable "a" {\n  type = string\n}\nvariable "b" {\n  description = "ok"\n}\noutput "c" {\n  value = 1\n}\n',
    )
    assert _rules(tfpolicy.description_findings(modules)) == {"variable.a": {"DOC001"}, "output.c": {"DOC001"}}


def test_invalid_hcl_is_reported_with_its_file(tmp_path: Path) -> None:
    (tmp_path / "broken.tf").write_text('resource "aws_s3_bucket" "x" {\n  bucket = \n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.tf: not valid HCL"):
        tfpolicy.load_dir(tmp_path)


# --- cross-checks with the code the stack deploys ------------------------------------------------


def _load_script(name: str) -> ModuleType:
    path = REPO / "infra" / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_glue_tables_are_generated_from_the_lake_specs() -> None:
    generator = _load_script("gen_lake_tables")
    current = (TF_ROOT / "lake_tables.tf").read_text(encoding="utf-8")
    assert current == generator.render(ALL_TABLES), (
        "infra/terraform/lake_tables.tf is out of date with src/bikeshare/lake/tables.py: "
        "run .venv/bin/python infra/scripts/gen_lake_tables.py"
    )


def test_glue_columns_follow_the_arrow_schemas(modules: list[tfpolicy.Module]) -> None:
    tables = _locals(modules)["lake_tables"]
    assert set(tables) == {spec.name for spec in ALL_TABLES}
    for spec in ALL_TABLES:
        table = tables[spec.name]
        assert table["prefix"] == spec.prefix and table["grain"] == str(spec.grain)
        assert [c["name"] for c in table["columns"]] == spec.schema.names
        assert "city" not in spec.schema.names and "dt" not in spec.schema.names  # partition keys only
    status = {c["name"]: c["type"] for c in tables["station_status"]["columns"]}
    assert status["last_reported"] == "timestamp" and status["bikes"] == "int" and status["masked"] == "boolean"


def _java_to_strftime(pattern: str) -> str:
    for java, c in (("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M")):
        pattern = pattern.replace(java, c)
    return pattern


def test_partition_projection_matches_the_lake_layout(modules: list[tfpolicy.Module]) -> None:
    table = _resource(modules, "aws_glue_catalog_table", "lake")
    assert table["for_each"] == "${local.lake_tables}"
    params = table["parameters"]
    assert params["projection.enabled"] == "true"
    assert params["projection.city.type"] == "enum" and "var.cities" in params["projection.city.values"]
    assert params["projection.dt.type"] == "date"
    assert params["storage.location.template"].endswith("/city=$${city}/dt=$${dt}/")
    assert [k["name"] for k in table["partition_keys"]] == ["city", "dt"]
    # The projected dt format must render an instant exactly as the Lake names its partitions.
    projection = _locals(modules)["dt_projection"]
    instant = datetime(2025, 3, 9, 7, 5, tzinfo=UTC)
    for grain in Grain:
        fmt = _java_to_strftime(projection[str(grain)]["format"])
        assert instant.strftime(fmt) == partition_value(instant, grain)
    assert projection["minute"]["unit"] == "MINUTES" and projection["day"]["unit"] == "DAYS"


def test_lake_lifecycle_tiers_raw_and_expires_each_table_after_its_retention(modules: list[tfpolicy.Module]) -> None:
    lifecycle = _resource(modules, "aws_s3_bucket_lifecycle_configuration", "lake")
    rules = {r["id"]: r for r in lifecycle["rule"]}
    raw = rules["raw-tiering"]
    assert raw["filter"][0]["prefix"] == "raw/"
    assert [t["storage_class"] for t in raw["transition"]] == ["STANDARD_IA"]
    assert "expiration" not in raw  # expiry is per table, below
    [dynamic] = [d["rule"] for d in lifecycle["dynamic"]]
    assert dynamic["for_each"] == "${local.lake_retention}"
    assert dynamic["content"][0]["expiration"][0]["days"] == "${rule.value.expire_days}"
    # The expiry days follow the retention settings: the job's days plus the grace, per table prefix.
    settings = Settings()
    retention = _locals(modules)["lake_retention"]
    specs = {spec.name: spec for spec in ALL_TABLES}
    scd = {name for name, spec in specs.items() if "valid_from" in spec.schema.names}
    assert set(retention) == set(settings.retention_days) - scd
    assert scd and not scd & set(retention)  # the current version of a dimension is never expired by age
    for name, rule in retention.items():
        assert rule["prefix"] == specs[name].prefix + "/"
        assert rule["expire_days"] == settings.retention_days[name] + settings.retention_s3_grace_days
    assert "promotions" not in retention and "feature_baselines" not in retention  # kept forever
    prefixes = [rule["prefix"] for rule in retention.values()]
    assert not any(a != b and b.startswith(a) for a in prefixes for b in prefixes)  # no rule reaches another table
    assert _variable_defaults(modules)["raw_to_ia_days"] < retention["station_status"]["expire_days"]


# Tables no AWS job writes: operators make dispatch plans from the dashboard or the CLI.
NOT_WRITTEN_ON_AWS = {"plans"}


def test_every_lake_table_has_a_writer_role(modules: list[tfpolicy.Module]) -> None:
    writes: dict[str, list[str]] = _locals(modules)["lake_writes"]
    for spec in ALL_TABLES:
        writers = [
            role for role, prefixes in writes.items() if any((spec.prefix + "/").startswith(p) for p in prefixes)
        ]
        if spec.prefix in NOT_WRITTEN_ON_AWS:
            continue
        assert writers, (
            f"no task role may write the lake table {spec.name} ({spec.prefix}/): "
            "add its prefix to local.lake_writes in infra/terraform/iam.tf for the job that writes it"
        )
    roots = [spec.prefix + "/" for spec in ALL_TABLES]
    for role, prefixes in writes.items():
        for prefix in prefixes:
            assert any(r.startswith(prefix) for r in roots), f"{role} writes {prefix}, which holds no lake table"


def test_alarm_thresholds_are_the_seed_thresholds(modules: list[tfpolicy.Module]) -> None:
    defaults = _variable_defaults(modules)
    settings = Settings()
    assert (defaults["data_delay_warning_s"], defaults["data_delay_critical_s"]) == (3 * 60, 5 * 60)
    assert (defaults["endpoint_p95_warning_ms"], defaults["endpoint_p95_critical_ms"]) == (200, 300)
    assert defaults["inference_failure_rate_critical_pct"] == 1
    assert (defaults["psi_warning"], defaults["psi_critical"]) == (0.2, 0.3)
    assert defaults["kpi_min_pr_auc"] == settings.kpi_min_pr_auc
    assert defaults["kpi_min_f1"] == settings.kpi_min_f1
    latency = _resource(modules, "aws_cloudwatch_metric_alarm", "endpoint_latency")
    assert latency["extended_statistic"] == "p95" and "* 1000" in latency["threshold"]  # ms -> microseconds
    delay = _resource(modules, "aws_cloudwatch_metric_alarm", "data_delay")
    assert "breaching" in delay["treat_missing_data"]  # a dead feed alarms


def _rate_minutes(expression: str) -> int:
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours)\)", expression)
    assert match, expression
    return int(match.group(1)) * (60 if match.group(2).startswith("hour") else 1)


def test_schedules_follow_the_settings(modules: list[tfpolicy.Module]) -> None:
    schedules = _variable_defaults(modules)["job_schedules"]
    settings = Settings()
    assert _rate_minutes(schedules["ingest"]) * 60 == settings.poll_interval_s
    assert _rate_minutes(schedules["infer"]) == settings.infer_interval_min
    assert _rate_minutes(schedules["monitor"]) == settings.monitor_interval_min
    assert schedules["pipeline"].startswith("cron(") and settings.retrain_interval_h == 24
    assert set(schedules) <= set(_locals(modules)["jobs"])


def test_every_bikeshare_variable_is_a_setting() -> None:
    texts = [p.read_text(encoding="utf-8") for p in TF_ROOT.rglob("*.tf")]
    texts += [p.read_text(encoding="utf-8") for p in (REPO / ".github").rglob("*.yml")]
    names = {m.group(1) for text in texts for m in re.finditer(r"\bBIKESHARE_([A-Z0-9_]+)\b", text)}
    assert {"LAKE_URI", "CITY", "SERVE_ALIAS", "MLFLOW_TRACKING_URI"} <= names
    fields = set(Settings.model_fields)
    unknown = sorted(n for n in names if n.lower() not in fields)
    assert not unknown, f"BIKESHARE_* variables that Settings does not define: {unknown}"


def test_endpoints_serve_each_alias_on_the_sagemaker_port(modules: list[tfpolicy.Module]) -> None:
    model = _resource(modules, "aws_sagemaker_model", "endpoint")
    env = model["primary_container"][0]["environment"]
    assert env["BIKESHARE_SERVE_ALIAS"] == "${each.value.environment}"
    assert env["BIKESHARE_SERVE_PORT"] == "8080" and env["BIKESHARE_SERVE_HOST"] == "0.0.0.0"
    assert _locals(modules)["environments"] == '${toset(["staging", "production"])}'
    ecr = _resource(modules, "aws_ecr_repository", "app")
    assert ecr["image_tag_mutability"] == "IMMUTABLE"
    assert ecr["image_scanning_configuration"][0]["scan_on_push"] is True


# --- terraform itself, where this machine has it and the AWS provider offline ------------------


def _terraform_unavailable() -> str | None:
    if shutil.which("terraform") is None:
        return "no terraform binary on PATH"
    if not (PLUGIN_DIR / "registry.terraform.io" / "hashicorp" / "aws").is_dir():
        return f"no offline AWS provider under {PLUGIN_DIR} (set BIKESHARE_TF_PLUGIN_DIR)"
    return None


# Both stacks as modules of one throw-away root: one provider load and one `validate` for the two.
WRAPPER = """
module "main" {
  source                            = "./main"
  image_tag                         = "0000000000000000000000000000000000000000"
  vpc_id                            = "vpc-00000000"
  private_subnet_ids                = ["subnet-a", "subnet-b"]
  workload_permissions_boundary_arn = "arn:aws:iam::123456789012:policy/bikeshare-ci/boundary"
}

module "bootstrap" {
  source            = "./bootstrap"
  github_repository = "owner/repo"
  vpc_id            = "vpc-00000000"
}
"""


def _terraform(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}
    return subprocess.run(
        ["terraform", *args], cwd=work, env=env, capture_output=True, text=True, check=False, timeout=180
    )


@pytest.mark.slow
def test_terraform_fmt_init_and_validate(tmp_path: Path) -> None:
    """terraform fmt -check, an offline init against the committed lock file, and validate."""
    reason = _terraform_unavailable()
    if reason:
        pytest.skip(reason)
    for stack, source in (("main", TF_ROOT), ("bootstrap", TF_ROOT / "bootstrap")):
        (tmp_path / stack).mkdir()
        for path in source.glob("*.tf"):
            shutil.copy(path, tmp_path / stack / path.name)
    # The main stack's lock file: init must find the provider version and hash it records.
    shutil.copy(TF_ROOT / ".terraform.lock.hcl", tmp_path / ".terraform.lock.hcl")
    (tmp_path / "wrapper.tf").write_text(WRAPPER.lstrip(), encoding="utf-8")
    assert (TF_ROOT / "bootstrap" / ".terraform.lock.hcl").read_text() == (TF_ROOT / ".terraform.lock.hcl").read_text()

    fmt = _terraform(tmp_path, "fmt", "-check", "-diff", "-recursive", "-no-color")
    assert fmt.returncode == 0, f"terraform fmt would change:\n{fmt.stdout}"
    init = _terraform(tmp_path, "init", "-backend=false", "-input=false", "-no-color", f"-plugin-dir={PLUGIN_DIR}")
    if init.returncode != 0 and "Failed to query available provider packages" in init.stderr:
        pytest.skip(f"the offline AWS provider under {PLUGIN_DIR} does not satisfy the lock file")
    assert init.returncode == 0, init.stderr
    validate = _terraform(tmp_path, "validate", "-no-color")
    assert validate.returncode == 0, validate.stderr + validate.stdout
