"""Alert rules: read from a TOML or YAML file, validated with pydantic.

A threshold rule compares the value of a named signal with a warning and/or a critical threshold.
An absence rule (the dead feed) fires when the newest matching signal is older than its thresholds
(seconds), or when there is no matching signal at all. ``labels`` select signals (every rule label
must be present with the same value); ``group_by`` says which signal labels identify one alert
(default: all of them), the worst signal of each group deciding its severity.
"""

from __future__ import annotations

import math
import operator
import tomllib
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_RULES_RESOURCE = "default_rules.toml"
RULES_FORMAT_VERSION = 1

Comparison = Literal[">", ">=", "<", "<="]
Severity = Literal["warning", "critical"]
SEVERITY_RANK: dict[str, int] = {"warning": 1, "critical": 2}

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


class AlertRule(BaseModel):
    """One alert rule; see the module docstring for the semantics."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Unique rule id, e.g. data_delay.")
    signal: str = Field(min_length=1, description="Signal name the rule reads.")
    kind: Literal["threshold", "absence"] = "threshold"
    comparison: Comparison = Field(">", description="How the value is compared with the thresholds.")
    warning: float | None = None
    critical: float | None = None
    unit: str = Field("", description="Unit of value and thresholds, for messages (s, ms, ratio, ...).")
    for_evaluations: int = Field(
        1, ge=1, description="Consecutive breaching evaluations before the alert fires (pending until then)."
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Signal labels this rule selects.")
    group_by: list[str] | None = Field(None, description="Signal labels that identify one alert; default all.")
    summary: str = Field(min_length=1, description="One line saying what the alert means.")
    runbook: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="Anchor in docs/monitoring_runbook.md.")

    @field_validator("warning", "critical")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("thresholds must be finite numbers")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AlertRule:
        if self.warning is None and self.critical is None:
            raise ValueError("set a warning or a critical threshold (or both)")
        # critical must be the harder condition: whatever breaches it also breaches warning.
        if (
            self.warning is not None
            and self.critical is not None
            and not (self.breaches(self.critical, self.warning) or self.critical == self.warning)
        ):
            raise ValueError(
                f"critical ({self.critical}) must be beyond warning ({self.warning}) for comparison '{self.comparison}'"
            )
        if self.kind == "absence":
            if self.comparison not in (">", ">="):
                raise ValueError("an absence rule compares the age of the newest signal with '>' or '>='")
            if any(t is not None and t <= 0 for t in (self.warning, self.critical)):
                raise ValueError("absence thresholds are seconds of silence and must be positive")
            if self.group_by is not None:
                raise ValueError("an absence rule is identified by its labels; group_by does not apply")
        return self

    def breaches(self, value: float, threshold: float) -> bool:
        """Whether ``value`` is beyond ``threshold`` for this rule's comparison."""
        return _COMPARE[self.comparison](value, threshold)

    def severity_of(self, value: float) -> Severity | None:
        """``critical``, ``warning`` or None (fine) for a value."""
        if self.critical is not None and self.breaches(value, self.critical):
            return "critical"
        if self.warning is not None and self.breaches(value, self.warning):
            return "warning"
        return None

    def threshold_of(self, severity: Severity) -> float | None:
        return self.critical if severity == "critical" else self.warning

    @property
    def top_severity(self) -> Severity:
        """The highest severity this rule can raise."""
        return "critical" if self.critical is not None else "warning"

    def selects(self, labels: Mapping[str, str]) -> bool:
        """Whether a signal with these labels is one this rule reads."""
        return all(labels.get(key) == value for key, value in self.labels.items())


class RuleSet(BaseModel):
    """The validated content of a rules file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = RULES_FORMAT_VERSION
    rules: tuple[AlertRule, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> RuleSet:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} is used twice")
            seen.add(rule.name)
        return self

    def get(self, name: str) -> AlertRule:
        """The rule called ``name``; KeyError names the known ones."""
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(f"no alert rule {name!r}; rules: {[r.name for r in self.rules]}")


class RulesFileError(ValueError):
    """A rules file that cannot be read or does not validate; the message names the bad rule and field."""


def parse_rules(data: Any, *, source: str = "<rules>") -> RuleSet:
    """Validate already-parsed rules data (a dict with ``rules``); errors name rule and field."""
    try:
        return RuleSet.model_validate(data)
    except ValidationError as exc:
        raise RulesFileError(f"{source}: invalid alert rules:\n" + _describe(exc, data)) from None


def load_rules(path: Path | None = None) -> RuleSet:
    """Rules from a .toml/.yaml/.yml file, or the built-in defaults when ``path`` is None."""
    if path is None:
        text = resources.files("bikeshare.monitoring").joinpath(DEFAULT_RULES_RESOURCE).read_text("utf-8")
        return parse_rules(tomllib.loads(text), source=f"bikeshare.monitoring/{DEFAULT_RULES_RESOURCE}")
    if not path.is_file():
        raise RulesFileError(f"alert rules file {path} does not exist")
    text = path.read_text("utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            raise RulesFileError(f"{path}: alert rules must be a .toml, .yaml or .yml file")
    except tomllib.TOMLDecodeError as exc:
        raise RulesFileError(f"{path}: not valid TOML: {exc}") from None
    except yaml.YAMLError as exc:
        raise RulesFileError(f"{path}: not valid YAML: {exc}") from None
    return parse_rules(data, source=str(path))


def _describe(exc: ValidationError, data: Any) -> str:
    """One line per error: ``rules[2] (data_delay).warning: Input should be a valid number``."""
    lines = []
    rules = data.get("rules") if isinstance(data, Mapping) else None
    errors = exc.errors()
    in_a_rule = any(len(e["loc"]) >= 2 and e["loc"][0] == "rules" for e in errors)
    for error in errors:
        if in_a_rule and tuple(error["loc"]) == ("rules",) and error["type"] == "too_short":
            continue  # pydantic's echo of a failed rule; the rule's own error says more
        loc = list(error["loc"])
        where = ".".join(str(part) for part in loc) or "(file)"
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            index = loc[1]
            name = None
            if isinstance(rules, list) and index < len(rules) and isinstance(rules[index], Mapping):
                name = rules[index].get("name")
            field = ".".join(str(part) for part in loc[2:]) or "(rule)"
            where = f"rules[{index}] ({name or 'unnamed'}).{field}"
        lines.append(f"  {where}: {error['msg']}")
    return "\n".join(lines)
