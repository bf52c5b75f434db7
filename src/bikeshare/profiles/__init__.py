"""Named settings profiles: TOML files in this package that the demo and the drills apply to the
user's settings. Every value a job then sees has been validated like any other setting.

A profile file has a ``[settings]`` table of field values and an optional ``unset`` list of fields
that go back to their unset (``None``) default, since TOML has no null.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

from bikeshare.settings import Settings


def profile_values(name: str) -> dict[str, Any]:
    """The field values profile ``name`` sets (``unset`` fields as ``None``)."""
    source = resources.files(__package__).joinpath(f"{name}.toml")
    if not source.is_file():
        known = sorted(
            p.name.removesuffix(".toml") for p in resources.files(__package__).iterdir() if p.name.endswith(".toml")
        )
        raise ValueError(f"unknown settings profile {name!r}; known: {', '.join(known)}")
    doc = tomllib.loads(source.read_text(encoding="utf-8"))
    unknown = sorted(set(doc) - {"settings", "unset"})
    if unknown:
        raise ValueError(f"profile {name}: unknown table(s) {', '.join(unknown)}")
    return {**dict.fromkeys(doc.get("unset", [])), **doc.get("settings", {})}


def with_profile(base: Settings, name: str, **values: Any) -> Settings:
    """``base`` with profile ``name`` applied, then ``values`` (paths of a workspace, a city), validated."""
    return base.with_values(**{**profile_values(name), **values})
