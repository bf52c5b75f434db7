"""Alert rules files: the built-in seed rules, TOML/YAML loading, and errors that name the bad rule."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bikeshare.monitoring.rules import AlertRule, RulesFileError, load_rules, parse_rules
from bikeshare.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _rule(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "r",
        "signal": "s",
        "comparison": ">",
        "warning": 1.0,
        "critical": 2.0,
        "summary": "x",
        "runbook": "r",
    }
    base.update(overrides)
    return base


def test_default_rules_are_the_seed_thresholds() -> None:
    rules = load_rules()
    limits = {r.name: (r.signal, r.comparison, r.warning, r.critical) for r in rules.rules}
    assert limits["data_delay"] == ("data_delay_s", ">", 180.0, 300.0)
    assert limits["endpoint_latency"] == ("endpoint_p95_ms", ">", 200.0, 300.0)
    assert limits["feature_drift"] == ("feature_psi", ">", 0.2, 0.3)
    assert limits["prediction_drift"] == ("prediction_psi", ">", 0.2, 0.3)
    assert limits["inference_failures"] == ("inference_failure_rate", ">", None, 0.01)
    assert rules.get("dead_feed").kind == "absence"
    assert rules.get("dead_feed").labels == {"feed": "station_status"}


def test_quality_rules_agree_with_the_training_kpis() -> None:
    rules = load_rules()
    defaults = Settings()
    assert rules.get("model_pr_auc").signal == "model_pr_auc_24h"
    assert rules.get("model_pr_auc").warning == defaults.kpi_min_pr_auc
    assert rules.get("model_f1").signal == "model_f1_24h"
    assert rules.get("model_f1").warning == defaults.kpi_min_f1
    assert rules.get("model_f1").comparison == "<"


def test_every_runbook_anchor_is_a_heading_of_the_runbook() -> None:
    text = (DOCS / "monitoring_runbook.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in text.splitlines()
        if line.startswith("#")
    }
    missing = {r.runbook for r in load_rules().rules} - anchors
    assert not missing, f"runbook anchors without a heading: {missing}"


def test_every_default_rule_is_in_the_sla_catalogue() -> None:
    text = (DOCS / "ops_sla.md").read_text()
    for rule in load_rules().rules:
        assert f"`{rule.name}`" in text, rule.name


def test_toml_and_yaml_files_load_the_same_rules(tmp_path: Path) -> None:
    toml = tmp_path / "rules.toml"
    toml.write_text(
        'version = 1\n[[rules]]\nname = "slow"\nsignal = "endpoint_p95_ms"\nwarning = 150\n'
        'summary = "slow"\nrunbook = "endpoint-latency"\nlabels = { route = "invocations" }\n'
    )
    yaml = tmp_path / "rules.yaml"
    yaml.write_text(
        "version: 1\nrules:\n  - name: slow\n    signal: endpoint_p95_ms\n    warning: 150\n"
        "    summary: slow\n    runbook: endpoint-latency\n    labels: {route: invocations}\n"
    )
    assert load_rules(toml) == load_rules(yaml)
    assert load_rules(toml).get("slow").labels == {"route": "invocations"}


def test_errors_name_the_rule_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        'version = 1\n[[rules]]\nname = "ok_rule"\nsignal = "a"\nwarning = 1\nsummary = "a"\nrunbook = "a"\n'
        '[[rules]]\nname = "data_delay"\nsignal = "b"\nwarning = "soon"\nsummary = "b"\nrunbook = "b"\n'
    )
    with pytest.raises(RulesFileError) as info:
        load_rules(path)
    message = str(info.value)
    assert str(path) in message
    assert "rules[1] (data_delay).warning" in message


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"warning": None, "critical": None}, "set a warning or a critical"),
        ({"warning": 5.0, "critical": 2.0}, "critical (2.0) must be beyond warning (5.0)"),
        ({"comparison": "<", "warning": 0.5, "critical": 0.7}, "must be beyond warning"),
        ({"comparison": "=="}, "comparison"),
        ({"kind": "absence", "comparison": "<", "warning": 2.0, "critical": 1.0}, "absence rule"),
        ({"kind": "absence", "warning": 0.0}, "positive"),
        ({"name": "Bad Name"}, "name"),
        ({"runbook": "Has Spaces"}, "runbook"),
        ({"colour": "red"}, "colour"),
        ({"for_evaluations": 0}, "for_evaluations"),
        ({"warning": float("nan")}, "finite"),
    ],
)
def test_invalid_rules_are_refused(overrides: dict[str, object], needle: str) -> None:
    with pytest.raises(RulesFileError) as info:
        parse_rules({"version": 1, "rules": [_rule(**overrides)]})
    assert needle in str(info.value)


def test_duplicate_names_and_empty_files_are_refused() -> None:
    with pytest.raises(RulesFileError, match="used twice"):
        parse_rules({"rules": [_rule(), _rule()]})
    with pytest.raises(RulesFileError, match="rules"):
        parse_rules({"version": 1, "rules": []})
    with pytest.raises(RulesFileError, match="version"):
        parse_rules({"version": 2, "rules": [_rule()]})


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(RulesFileError, match="does not exist"):
        load_rules(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[[rules]\nname=")
    with pytest.raises(RulesFileError, match="not valid TOML"):
        load_rules(broken)
    bad_yaml = tmp_path / "broken.yaml"
    bad_yaml.write_text("rules: [unclosed")
    with pytest.raises(RulesFileError, match="not valid YAML"):
        load_rules(bad_yaml)
    other = tmp_path / "rules.json"
    other.write_text("{}")
    with pytest.raises(RulesFileError, match=r"\.toml, \.yaml or \.yml"):
        load_rules(other)


def test_severity_of_follows_the_comparison() -> None:
    high = AlertRule.model_validate(_rule())
    assert [high.severity_of(v) for v in (0.5, 1.0, 1.5, 2.0, 3.0)] == [None, None, "warning", "warning", "critical"]
    low = AlertRule.model_validate(_rule(comparison="<=", warning=0.7, critical=0.5))
    assert [low.severity_of(v) for v in (0.9, 0.7, 0.6, 0.5)] == [None, "warning", "warning", "critical"]
