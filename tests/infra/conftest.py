"""Fixtures of the infra checks: the Terraform stacks parsed once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import tfpolicy

TF_ROOT = Path(__file__).resolve().parents[2] / "infra" / "terraform"


@pytest.fixture(scope="session")
def tf_modules() -> list[tfpolicy.Module]:
    """Every .tf file of infra/terraform (main stack and bootstrap), parsed."""
    return tfpolicy.load_dir(TF_ROOT)


@pytest.fixture(scope="session")
def bootstrap_modules(tf_modules: list[tfpolicy.Module]) -> list[tfpolicy.Module]:
    return [m for m in tf_modules if m.path.parent.name == "bootstrap"]
