"""Package boundaries, read from the source: monitoring imports nothing from serving or orchestration,
and serving reaches monitoring only through its alert-store interface (``bikeshare.monitoring.acks``)."""

from __future__ import annotations

import ast
from pathlib import Path

import bikeshare

SRC = Path(bikeshare.__file__).parent


def imported_modules(package: str) -> dict[str, set[str]]:
    """Module file (relative to the package) -> every ``bikeshare...`` module it imports, at any depth."""
    found: dict[str, set[str]] = {}
    for path in sorted((SRC / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        found[str(path.relative_to(SRC))] = {n for n in names if n.startswith("bikeshare.")}
    return found


def test_the_walker_sees_the_imports_it_is_about() -> None:
    drills = imported_modules("orchestration")
    assert "bikeshare.serving.app" in drills["orchestration/drills/endpoint.py"]  # what it must not miss
    assert any("bikeshare.monitoring.job" in names for names in drills.values())


def test_monitoring_imports_nothing_from_serving_or_orchestration() -> None:
    offending = {
        module: sorted(n for n in names if n.startswith(("bikeshare.serving", "bikeshare.orchestration")))
        for module, names in imported_modules("monitoring").items()
    }
    assert not {m: n for m, n in offending.items() if n}


def test_serving_reaches_monitoring_only_through_the_alert_store_interface() -> None:
    used = {
        module: sorted(n for n in names if n.startswith("bikeshare.monitoring"))
        for module, names in imported_modules("serving").items()
    }
    assert {n for names in used.values() for n in names} <= {"bikeshare.monitoring.acks"}, used
