"""Write which AWS provider resource types take ``tags``, for the tag policy in ``tests/infra``.

Reads the output of ``terraform providers schema -json`` (run in an initialised copy of
``infra/terraform``) and writes ``tests/infra/aws_resource_types.json``. Rerun it when the provider
version in ``versions.tf`` moves, so that new resource types are known to the tag check.

Usage: ``terraform providers schema -json | python infra/scripts/aws_resource_types.py [PROVIDER_VERSION]``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUTPUT = Path(__file__).resolve().parents[2] / "tests" / "infra" / "aws_resource_types.json"
PROVIDER = "registry.terraform.io/hashicorp/aws"


def classify(schema: dict) -> dict[str, object]:
    """Split the provider's resource types into those with a ``tags`` argument and the rest."""
    resources = schema["provider_schemas"][PROVIDER]["resource_schemas"]
    taggable = sorted(t for t, s in resources.items() if "tags" in s["block"].get("attributes", {}))
    untaggable = sorted(set(resources) - set(taggable))
    return {"provider": PROVIDER, "taggable": taggable, "untaggable": untaggable}


def main() -> int:
    payload = classify(json.load(sys.stdin))
    payload["source"] = "terraform providers schema -json, via infra/scripts/aws_resource_types.py"
    payload["provider_version"] = sys.argv[1] if len(sys.argv) > 1 else "unknown"
    OUTPUT.write_text(json.dumps(payload, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {OUTPUT}: {len(payload['taggable'])} taggable, {len(payload['untaggable'])} not")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
