"""Promotion, refusal, rollback and the audit trail against a real MLflow store and a temp lake."""

from __future__ import annotations

import json

import pytest

from bikeshare.registry.audit import holder_stack, read_events
from bikeshare.registry.client import ModelNotFoundError, get_version, model_name, resolve_alias
from bikeshare.registry.promotion import PromotionError, promote, rollback, version_audit_tags, version_table
from bikeshare.registry.tracking import log_training_run

from .synthetic import evaluate, station_frame, synthetic_run


def evaluator_on(frame):
    """The injected holder evaluator: score a bundle on the candidate's test rows (here: ``frame``)."""
    calls = []

    def score(bundle, candidate):
        calls.append((bundle.meta.feature_names, candidate.window_start))
        return evaluate(bundle, frame)

    score.calls = calls  # type: ignore[attr-defined]
    return score


def window_rows():
    """The rows every synthetic run is tested on (same seed and start as ``synthetic_run``)."""
    return station_frame(2000, seed=99, start="2026-03-20")


def log(registry, folder: str, **kwargs) -> str:
    run = synthetic_run(registry.work / folder, **kwargs)
    logged = log_training_run(client=registry.client, result=run, settings=registry.settings)
    return logged.version.version


def do_promote(registry, alias: str = "staging", **kwargs):
    defaults = {"note": "test", "evaluator": evaluator_on(window_rows())}
    return promote(
        client=registry.client,
        lake=registry.lake,
        settings=registry.settings,
        target="bikes",
        alias=alias,
        **{**defaults, **kwargs},
    )


def holder(registry, alias: str) -> str | None:
    try:
        return resolve_alias(registry.client, model_name(registry.settings.city, "bikes"), alias).version
    except ModelNotFoundError:
        return None


def test_promotion_moves_the_alias_and_records_it(registry) -> None:
    version = log(registry, "a")
    outcome = do_promote(registry, note="first model", actor="alice")
    assert outcome.action == "promote" and outcome.moved and outcome.version == version
    assert holder(registry, "staging") == version
    assert holder(registry, "production") is None

    events = read_events(registry.lake, city=registry.settings.city)
    assert len(events) == 1
    row = events.iloc[0]
    assert (row["actor"], row["version"], row["alias"], row["action"], row["verdict"], row["note"]) == (
        "alice", version, "staging", "promote", "pass", "first model"
    )  # fmt: skip
    assert row["previous_version"] is None or row["previous_version"] != row["previous_version"]
    assert {c["name"] for c in json.loads(row["checks"]) if c["passed"]} >= {"kpi_pr_auc", "beats_persistence_all"}

    con = registry.lake.connect()
    view = con.sql("SELECT model_name, version, action, city FROM promotions").fetchall()
    assert view == [(f"bikeshare-{registry.settings.city}-bikes", version, "promote", registry.settings.city)]

    info = resolve_alias(registry.client, model_name(registry.settings.city, "bikes"), "staging")
    tags = version_audit_tags(info, "staging")
    assert (tags["action"], tags["verdict"], tags["actor"], tags["note"]) == ("promote", "pass", "alice", "first model")
    assert tags["event_id"] == row["event_id"]

    again = do_promote(registry)
    assert again.action is None and "already holds" in again.message
    assert len(read_events(registry.lake, city=registry.settings.city)) == 1


def test_model_that_does_not_beat_persistence_is_refused(registry) -> None:
    log(registry, "good")
    do_promote(registry, alias="production")
    bad = log(registry, "bad", shuffle_labels=True)
    outcome = do_promote(registry, alias="production", version=bad, note="shuffled")
    assert outcome.action == "refused" and not outcome.moved
    failed = {c.name for c in outcome.verdict.failed}
    assert {"beats_persistence_all", "beats_persistence_onsets"} <= failed
    assert "refused" in outcome.message and "beats_persistence_all" in outcome.message
    assert holder(registry, "production") == "1"

    events = read_events(registry.lake, city=registry.settings.city)
    assert list(events["action"]) == ["promote", "refused"]
    assert events.iloc[1]["previous_version"] == "1" and events.iloc[1]["verdict"] == "fail"
    info = resolve_alias(registry.client, model_name(registry.settings.city, "bikes"), "production")
    assert version_audit_tags(info, "production")["action"] == "promote"
    bad_info = get_version(registry.client, info.name, bad)
    assert bad_info.tags["bikeshare.audit.production.verdict"] == "fail"
    assert bad_info.tags["bikeshare.audit.production.action"] == "refused"


def test_kpis_refuse_with_stricter_settings(registry) -> None:
    log(registry, "a")
    strict = registry.settings.model_copy(update={"kpi_min_pr_auc": 0.999, "kpi_min_f1": 0.999})
    outcome = promote(
        client=registry.client, lake=registry.lake, settings=strict, target="bikes", alias="staging",
        note="strict", evaluator=None,
    )  # fmt: skip
    assert outcome.action == "refused"
    assert {c.name for c in outcome.verdict.failed} == {"kpi_pr_auc", "kpi_f1"}
    assert holder(registry, "staging") is None


def test_candidate_worse_than_holder_is_refused_on_its_window(registry) -> None:
    strong = log(registry, "strong")
    do_promote(registry, alias="production")
    weak = log(registry, "weak", features=("bikes_now", "trend_noisy"), seed=3)
    test_frame = window_rows()
    evaluator = evaluator_on(test_frame)
    outcome = do_promote(registry, alias="production", evaluator=evaluator)
    assert outcome.version == weak and outcome.action == "refused"
    assert {c.name for c in outcome.verdict.failed} >= {"no_worse_than_holder_all"}
    # the holder (trained on bikes_now+trend) was scored on the candidate's test window
    assert evaluator.calls == [(("bikes_now", "trend"), test_frame["slot"].min().isoformat())]
    assert holder(registry, "production") == strong

    forced = do_promote(registry, alias="production", force=True, note="incident override")
    assert forced.action == "forced" and holder(registry, "production") == weak
    events = read_events(registry.lake, city=registry.settings.city)
    assert list(events["action"]) == ["promote", "refused", "forced"]


def test_holder_that_cannot_be_scored_blocks_promotion(registry) -> None:
    log(registry, "a")
    do_promote(registry)
    log(registry, "b", seed=5)

    def broken(bundle, candidate):
        raise KeyError("feature column gone")

    outcome = do_promote(registry, evaluator=broken)
    assert outcome.action == "refused"
    assert "feature column gone" in outcome.message


def test_rollback_restores_previous_holders_in_order(registry) -> None:
    versions = [log(registry, f"v{i}", seed=i) for i in range(3)]
    lenient = registry.settings.model_copy(update={"gate_max_holder_drop": 1.0})
    for version in versions:
        outcome = promote(
            client=registry.client, lake=registry.lake, settings=lenient, target="bikes", alias="production",
            note=f"v{version}", version=version, evaluator=evaluator_on(window_rows()),
        )  # fmt: skip
        assert outcome.action == "promote", outcome.message
    assert holder(registry, "production") == versions[2]

    args = {"client": registry.client, "lake": registry.lake, "settings": registry.settings, "target": "bikes"}
    back = rollback(**args, alias="production", note="bad deploy", actor="bob")
    assert (back.action, back.version, back.previous_version) == ("rollback", versions[1], versions[2])
    assert holder(registry, "production") == versions[1]
    assert rollback(**args, alias="production").version == versions[0]
    with pytest.raises(PromotionError, match="first recorded holder"):
        rollback(**args, alias="production")
    assert holder(registry, "production") == versions[0]
    with pytest.raises(PromotionError, match="nothing to roll back"):
        rollback(**args, alias="staging")

    events = read_events(registry.lake, city=registry.settings.city, alias="production")
    assert list(events["action"]) == ["promote"] * 3 + ["rollback"] * 2
    assert events.iloc[3][["actor", "note", "verdict"]].tolist() == ["bob", "bad deploy", "none"]
    assert holder_stack(events) == [versions[0]]
    demoted = get_version(registry.client, back.model_name, versions[2])
    assert "bikeshare.audit.production.rolled_back_at" in demoted.tags


def test_rollback_refuses_when_the_alias_moved_outside_bikeshare(registry) -> None:
    first, second = log(registry, "a"), log(registry, "b", seed=4)
    do_promote(registry, version=first)
    lenient = registry.settings.model_copy(update={"gate_max_holder_drop": 1.0})
    promote(client=registry.client, lake=registry.lake, settings=lenient, target="bikes", alias="staging",
            note="", version=second, evaluator=evaluator_on(window_rows()))  # fmt: skip
    registry.client.set_registered_model_alias(model_name(registry.settings.city, "bikes"), "staging", first)
    with pytest.raises(PromotionError, match="moved outside bikeshare"):
        rollback(
            client=registry.client, lake=registry.lake, settings=registry.settings, target="bikes", alias="staging"
        )
    assert holder(registry, "staging") == first


def test_unknown_version_and_alias_are_clear_errors(registry) -> None:
    with pytest.raises(ModelNotFoundError, match="no version"):
        do_promote(registry)
    log(registry, "a")
    with pytest.raises(ModelNotFoundError, match="no version 7"):
        do_promote(registry, version="7")
    with pytest.raises(ValueError, match="alias must be one of"):
        do_promote(registry, alias="canary")


def test_version_table_lists_aliases_metrics_and_verdicts(registry) -> None:
    log(registry, "a")
    log(registry, "bad", shuffle_labels=True)
    do_promote(registry, version="1")
    do_promote(registry, version="2")
    table = version_table(registry.client, settings=registry.settings, target="bikes")
    assert list(table["version"]) == ["2", "1"]
    assert list(table["aliases"]) == ["", "staging"]
    assert list(table["staging_gate"]) == ["fail", "pass"]
    assert table.iloc[1]["pr_auc"] > table.iloc[1]["persistence_pr_auc"]
