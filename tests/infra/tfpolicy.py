"""Policy checks over Terraform files, parsed with python-hcl2 (no terraform binary needed).

Each checker takes the parsed modules and returns :class:`Finding`s; an empty list means the
policy holds. The rules:

- IAM: no Allow of a ``*`` action on a ``*`` resource, no Allow with NotAction/NotResource, and no
  Allow to a ``*`` principal without a condition, in ``aws_iam_policy_document`` data sources and in
  ``jsonencode(...)``/JSON policies anywhere.
- S3: every ``aws_s3_bucket`` has a server-side encryption configuration, a public access block with
  all four switches on, and no public canned ACL.
- Tags: every resource whose type takes ``tags`` (per the AWS provider schema) sets them from
  ``local.tags``; an unknown resource type is reported too.
- Variables and outputs carry a description.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2
from hcl2.utils import SerializationOptions

_OPTIONS = SerializationOptions(with_comments=False, strip_string_quotes=True)
_JSONENCODE = re.compile(r"^\$\{jsonencode\((?P<body>.*)\)\}$", re.DOTALL)
_PUBLIC_ACLS = {"public-read", "public-read-write", "authenticated-read"}
_PAB_SWITCHES = ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")


@dataclass(frozen=True)
class Finding:
    """One policy violation: where it is and what is wrong."""

    file: str
    address: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.address}: [{self.rule}] {self.message}"


@dataclass(frozen=True)
class Module:
    """One parsed .tf file."""

    path: Path
    body: dict[str, Any]


@dataclass(frozen=True)
class Block:
    """A resource or data block: ``kind`` is "resource" or "data"."""

    module: Module
    kind: str
    type: str
    name: str
    body: dict[str, Any]

    @property
    def address(self) -> str:
        prefix = "data." if self.kind == "data" else ""
        return f"{prefix}{self.type}.{self.name}"


def load_dir(root: Path) -> list[Module]:
    """Parse every ``*.tf`` file under ``root`` (recursively, skipping ``.terraform``)."""
    paths = sorted(p for p in root.rglob("*.tf") if ".terraform" not in p.parts)
    if not paths:
        raise FileNotFoundError(f"no .tf files under {root}")
    modules = []
    for path in paths:
        try:
            with path.open(encoding="utf-8") as handle:
                modules.append(Module(path, hcl2.load(handle, serialization_options=_OPTIONS)))
        except Exception as exc:  # hcl2 raises lark errors of several kinds
            raise ValueError(f"{path}: not valid HCL: {exc}") from exc
    return modules


def blocks(modules: list[Module], kind: str = "resource") -> Iterator[Block]:
    """Every ``resource`` (or ``data``) block of the modules."""
    for module in modules:
        for entry in module.body.get(kind, []):
            for type_, named in entry.items():
                for name, body in named.items():
                    yield Block(module, kind, type_, name, body)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _parse_expression_policy(text: str) -> Any:
    """A policy given as ``jsonencode({...})`` or as a JSON string; None when it is a reference."""
    match = _JSONENCODE.match(text.strip())
    if match:
        return hcl2.loads(f"policy = {match.group('body')}\n", serialization_options=_OPTIONS)["policy"]
    stripped = text.strip()
    if stripped.startswith("{") and '"Statement"' in stripped:
        return json.loads(stripped)
    return None


def _policy_statements(value: Any) -> Iterator[dict[str, Any]]:
    """Walk any value; yield every IAM statement of every policy document found inside it."""
    if isinstance(value, str):
        if "Statement" in value:
            parsed = _parse_expression_policy(value)
            if parsed is not None:
                yield from _policy_statements(parsed)
        return
    if isinstance(value, list):
        for item in value:
            yield from _policy_statements(item)
        return
    if isinstance(value, dict):
        if "Statement" in value:
            for statement in _as_list(value["Statement"]):
                if isinstance(statement, dict):
                    yield statement
            return
        for item in value.values():
            yield from _policy_statements(item)


def _document_statements(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Statements of an ``aws_iam_policy_document``, normalised to the JSON policy shape."""
    raw = list(_as_list(body.get("statement")))
    for dynamic in _as_list(body.get("dynamic")):
        for label, content in dynamic.items():
            if label == "statement":
                raw.extend(_as_list(content.get("content")))
    for statement in raw:
        principals: list[Any] = []
        for principal in _as_list(statement.get("principals")):
            principals.extend(_as_list(principal.get("identifiers")))
        normalised: dict[str, Any] = {
            "Effect": statement.get("effect", "Allow"),
            "Action": statement.get("actions"),
            "NotAction": statement.get("not_actions"),
            "Resource": statement.get("resources"),
            "NotResource": statement.get("not_resources"),
            "Condition": statement.get("condition"),
        }
        if principals:
            normalised["Principal"] = principals
        yield normalised


def _principals(statement: dict[str, Any]) -> list[Any]:
    principal = statement.get("Principal")
    if isinstance(principal, dict):
        out: list[Any] = []
        for value in principal.values():
            out.extend(_as_list(value))
        return out
    return _as_list(principal)


def _statement_findings(block: Block, statement: dict[str, Any]) -> list[Finding]:
    if str(statement.get("Effect", "Allow")) != "Allow":
        return []
    file = block.module.path.name
    found = []
    actions = [str(a) for a in _as_list(statement.get("Action"))]
    resources = [str(r) for r in _as_list(statement.get("Resource"))]
    if "*" in actions and "*" in resources:
        found.append(Finding(file, block.address, "IAM001", 'Allow of action "*" on resource "*"'))
    if statement.get("NotAction"):
        found.append(Finding(file, block.address, "IAM002", "Allow with NotAction grants every other action"))
    if statement.get("NotResource"):
        found.append(Finding(file, block.address, "IAM003", "Allow with NotResource grants every other resource"))
    if "*" in [str(p) for p in _principals(statement)] and not statement.get("Condition"):
        found.append(Finding(file, block.address, "IAM004", 'Allow to principal "*" without a condition (public)'))
    return found


def iam_findings(modules: list[Module]) -> list[Finding]:
    """IAM statements that grant too much (see the module docstring)."""
    found: list[Finding] = []
    for block in blocks(modules, "data"):
        if block.type == "aws_iam_policy_document":
            for statement in _document_statements(block.body):
                found += _statement_findings(block, statement)
    for block in blocks(modules, "resource"):
        for statement in _policy_statements(block.body):
            found += _statement_findings(block, statement)
    return found


def _refers_to_bucket(body: dict[str, Any], bucket_name: str) -> bool:
    """Whether a companion resource's ``bucket`` points at ``aws_s3_bucket.<bucket_name>``."""
    reference = f"aws_s3_bucket.{bucket_name}"
    target = str(body.get("bucket", ""))
    if re.search(rf"{re.escape(reference)}(\.|\[)", target):
        return True
    for_each = str(body.get("for_each", ""))
    return "each." in target and re.search(rf"{re.escape(reference)}\b", for_each) is not None


def _encrypts(body: dict[str, Any]) -> bool:
    for rule in _as_list(body.get("rule")):
        for default in _as_list(rule.get("apply_server_side_encryption_by_default")):
            algorithm = str(default.get("sse_algorithm", ""))
            if "aws:kms" in algorithm or "AES256" in algorithm:
                return True
    return False


def bucket_findings(modules: list[Module]) -> list[Finding]:
    """S3 buckets that are not encrypted, not blocked from public access, or have a public ACL."""
    all_blocks = list(blocks(modules))
    found = []
    for bucket in (b for b in all_blocks if b.type == "aws_s3_bucket"):
        file = bucket.module.path.name
        companions = [b for b in all_blocks if _refers_to_bucket(b.body, bucket.name)]
        inline = _as_list(bucket.body.get("server_side_encryption_configuration"))  # the deprecated block
        encrypted = any(_encrypts(b) for b in inline) or any(
            c.type == "aws_s3_bucket_server_side_encryption_configuration" and _encrypts(c.body) for c in companions
        )
        if not encrypted:
            found.append(Finding(file, bucket.address, "S3001", "no server-side encryption configuration"))
        blocked = any(
            c.type == "aws_s3_bucket_public_access_block" and all(c.body.get(s) is True for s in _PAB_SWITCHES)
            for c in companions
        )
        if not blocked:
            found.append(Finding(file, bucket.address, "S3002", "no public access block with all four switches true"))
        acls = [str(bucket.body.get("acl", ""))] + [
            str(c.body.get("acl", "")) for c in companions if c.type == "aws_s3_bucket_acl"
        ]
        if any(acl in _PUBLIC_ACLS for acl in acls):
            found.append(Finding(file, bucket.address, "S3003", "public canned ACL"))
    return found


def tag_findings(modules: list[Module], *, taggable: set[str], untaggable: set[str]) -> list[Finding]:
    """Taggable resources without ``tags`` from ``local.tags``, and resource types the schema lacks."""
    found = []
    for block in blocks(modules):
        file = block.module.path.name
        if block.type in taggable:
            tags = block.body.get("tags")
            if tags is None:
                found.append(Finding(file, block.address, "TAG001", "taggable resource without tags"))
            elif "local.tags" not in str(tags):
                found.append(Finding(file, block.address, "TAG002", "tags do not include the common local.tags"))
        elif block.type not in untaggable:
            found.append(
                Finding(file, block.address, "TAG003", f"unknown resource type {block.type} (typo or newer provider)")
            )
    return found


def description_findings(modules: list[Module]) -> list[Finding]:
    """Variables and outputs without a non-empty description."""
    found = []
    for module in modules:
        for kind in ("variable", "output"):
            for entry in module.body.get(kind, []):
                for name, body in entry.items():
                    if not str(body.get("description", "")).strip():
                        found.append(Finding(module.path.name, f"{kind}.{name}", "DOC001", "no description"))
    return found


def load_resource_types(path: Path) -> tuple[set[str], set[str]]:
    """The (taggable, untaggable) resource type sets of the vendored provider schema summary."""
    payload = json.loads(path.read_text(encoding="utf-8"))
    return set(payload["taggable"]), set(payload["untaggable"])


def check_modules(modules: list[Module], types_file: Path) -> list[Finding]:
    """Every policy over parsed modules (``types_file``: the provider's resource type summary)."""
    taggable, untaggable = load_resource_types(types_file)
    return (
        iam_findings(modules)
        + bucket_findings(modules)
        + tag_findings(modules, taggable=taggable, untaggable=untaggable)
        + description_findings(modules)
    )


def check_dir(root: Path, types_file: Path) -> list[Finding]:
    """Every policy over every .tf file under ``root``."""
    return check_modules(load_dir(root), types_file)
