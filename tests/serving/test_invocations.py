"""The SageMaker contract on a real endpoint: /ping, /invocations in both orientations, and every
kind of bad input answered with a 4xx that names the problem (never a 500)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from bikeshare.registry.client import load_bundle, model_name

from .conftest import Endpoint, Store
from .realmodel import FEATURE_NAMES, city_request


@pytest.fixture
def endpoint(store: Store, city_both: str, serve: Callable[..., Endpoint]) -> Endpoint:
    return serve(store.settings(city_both, serve_max_batch_rows=600))


@pytest.fixture(scope="module")
def body(store: Store) -> dict[str, Any]:
    return city_request(store.frame)


def _expected(store: Store, city: str, alias: str, rows: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    for target in ("bikes", "docks"):
        bundle, _ = load_bundle(store.client, model_name(city, target), alias, store.work / "expected")
        out[target] = bundle.predict_proba(rows)
        out[f"t_{target}"] = np.float64(bundle.meta.decision_threshold)
    return out


def test_ping_and_whole_city_split_request(endpoint: Endpoint, store: Store, city_both: str, body: dict) -> None:
    with endpoint.client() as http:
        assert http.get("/ping").status_code == 200
        response = http.post("/invocations", json=body)
    assert response.status_code == 200, response.text
    doc = response.json()
    rows = len(body["data"])
    assert rows > 400  # every station of the latest slot of the slice
    assert doc["alias"] == "production" and response.headers["x-bikeshare-alias"] == "production"
    versions = {t: doc["models"][t]["version"] for t in ("bikes", "docks")}
    assert response.headers["x-bikeshare-model-versions"] == f"bikes={versions['bikes']},docks={versions['docks']}"
    assert doc["models"]["bikes"]["name"] == model_name(city_both, "bikes")
    assert doc["station_id"] == [row[0] for row in body["data"]]
    matrix = np.array([row[1:] for row in body["data"]], dtype=np.float64)
    expected = _expected(store, city_both, "production", matrix)
    for target in ("bikes", "docks"):
        p = np.array(doc[f"p_{target}"])
        assert p.shape == (rows,)
        np.testing.assert_allclose(p, expected[target], rtol=1e-12)
        assert doc[f"short_{target}"] == (p >= doc["models"][target]["threshold"]).tolist()
        assert doc["models"][target]["threshold"] == expected[f"t_{target}"]
    assert 0 < sum(doc["short_bikes"]) < rows  # the slice has short and non-short stations


def test_target_query_scores_one_model(endpoint: Endpoint, body: dict) -> None:
    with endpoint.client() as http:
        both = http.post("/invocations", json=body).json()
        answers = {t: http.post(f"/invocations?target={t}", json=body) for t in ("bikes", "docks")}
        wrong = http.post("/invocations?target=ebikes", json=body)
    for target, other in (("bikes", "docks"), ("docks", "bikes")):
        response = answers[target]
        assert response.status_code == 200, response.text
        doc = response.json()
        assert set(doc["models"]) == {target} and doc["models"][target] == both["models"][target]
        assert doc[f"p_{target}"] == both[f"p_{target}"] and doc[f"short_{target}"] == both[f"short_{target}"]
        assert f"p_{other}" not in doc and f"short_{other}" not in doc
    assert (
        wrong.status_code == 400 and wrong.json()["error"] == "unknown_target" and "'ebikes'" in wrong.json()["detail"]
    )


def test_records_orientation_reordered_and_extra_columns_give_the_same_answer(endpoint: Endpoint, body: dict) -> None:
    columns = body["columns"]
    records = [dict(zip(columns, row, strict=True)) for row in body["data"][:40]]
    shuffled = [*list(reversed(columns)), "not_a_feature"]
    split = {"columns": shuffled, "data": [[r[c] for c in reversed(columns)] + ["x"] for r in records]}
    with endpoint.client() as http:
        a = http.post("/invocations", json={"instances": records}).json()
        b = http.post("/invocations", json=split).json()
        c = http.post("/invocations", json={"columns": columns[1:], "data": [row[1:] for row in body["data"][:40]]})
    assert a["p_bikes"] == b["p_bikes"] and a["p_docks"] == b["p_docks"]
    assert a["station_id"] == b["station_id"] == [r["station_id"] for r in records]
    assert c.status_code == 200 and "station_id" not in c.json()  # optional, echoed only when sent
    assert c.json()["p_bikes"] == a["p_bikes"]


def test_null_features_are_missing_values(endpoint: Endpoint) -> None:
    row = {"station_id": "s1", **dict.fromkeys(FEATURE_NAMES)}
    with endpoint.client() as http:
        response = http.post("/invocations", json={"instances": [row, {**row, "bikes": 0, "is_weekend": True}]})
    assert response.status_code == 200, response.text
    p = response.json()["p_bikes"]
    assert len(p) == 2 and all(0.0 <= v <= 1.0 for v in p)


def test_alias_header_pins_the_model(endpoint: Endpoint, body: dict) -> None:
    small = {"columns": body["columns"], "data": body["data"][:5]}
    with endpoint.client() as http:
        prod = http.post("/invocations", json=small)
        stag = http.post("/invocations", json=small, headers={"X-Bikeshare-Alias": "staging"})
        bad = http.post("/invocations", json=small, headers={"X-Bikeshare-Alias": "canary"})
    assert stag.status_code == 200 and stag.json()["alias"] == "staging"
    assert stag.headers["x-bikeshare-alias"] == "staging"
    assert stag.json()["models"]["bikes"]["version"] != prod.json()["models"]["bikes"]["version"]
    assert stag.json()["p_bikes"] != prod.json()["p_bikes"]
    assert bad.status_code == 400 and bad.json()["error"] == "unknown_alias" and "canary" in bad.json()["detail"]


def _bad_cases(body: dict) -> list[tuple[str, bytes, int, str, str]]:
    columns, row = body["columns"], body["data"][0]
    record = dict(zip(columns, row, strict=True))
    without = {k: v for k, v in record.items() if k not in ("bikes", "docks")}
    text_feature = [*row[:3], "abc", *row[4:]]
    numeric_text = [*row[:3], "1.5", *row[4:]]
    return [
        ("empty body", b"", 400, "empty_body", "empty"),
        ("not json", b"{columns: [", 400, "malformed_json", "not valid JSON"),
        ("NaN literal", b'{"instances": [{"bikes": NaN}]}', 400, "malformed_json", "not valid JSON"),
        ("json array", b"[1, 2]", 400, "wrong_shape", "a list"),
        ("unknown keys", b'{"rows": []}', 400, "wrong_shape", "'rows'"),
        ("both shapes", orjson.dumps({"instances": [], "columns": [], "data": []}), 400, "wrong_shape", "not both"),
        ("columns not strings", orjson.dumps({"columns": [1], "data": [[1]]}), 400, "wrong_shape", "names"),
        ("duplicate columns", orjson.dumps({"columns": [*columns, "bikes"], "data": []}), 400, "duplicate_columns",
         "bikes"),
        ("missing features split", orjson.dumps({"columns": columns[:-2], "data": [row[:-2]]}), 422,
         "missing_features", repr(columns[-1])),
        ("missing features records", orjson.dumps({"instances": [record, without]}), 422, "missing_features",
         "instance 1 lacks 2 feature(s): 'bikes', 'docks'"),
        ("data not list", orjson.dumps({"columns": columns, "data": {"a": 1}}), 400, "wrong_shape", "list of rows"),
        ("row too short", orjson.dumps({"columns": columns, "data": [row, row[:-1]]}), 400, "wrong_shape", "row 1"),
        ("row not list", orjson.dumps({"columns": columns, "data": [row, "x"]}), 400, "wrong_shape", "row 1"),
        ("instance not object", orjson.dumps({"instances": [record, 3]}), 400, "wrong_shape", "instance 1"),
        ("string feature", orjson.dumps({"columns": columns, "data": [row, text_feature]}), 422, "wrong_type",
         f"feature {columns[3]!r} of row 1"),
        ("numeric string", orjson.dumps({"columns": columns, "data": [numeric_text]}), 422, "wrong_type", '"1.5"'),
        ("list feature", orjson.dumps({"instances": [{**record, "bikes": [1]}]}), 422, "wrong_type", "'bikes'"),
        ("object station id", orjson.dumps({"instances": [{**record, "station_id": {"id": 1}}]}), 422,
         "wrong_type", "'station_id' of instance 0"),
        ("empty batch", orjson.dumps({"columns": columns, "data": []}), 400, "empty_batch", "no rows"),
        ("too many rows", orjson.dumps({"columns": columns, "data": [row] * 601}), 413, "batch_too_large",
         "601 rows; the limit is 600"),
    ]  # fmt: skip


def test_bad_input_gets_a_named_4xx(endpoint: Endpoint, body: dict) -> None:
    with endpoint.client() as http:
        for name, payload, status, code, detail in _bad_cases(body):
            response = http.post("/invocations", content=payload, headers={"Content-Type": "application/json"})
            assert response.status_code == status, (name, response.text)
            doc = response.json()
            assert doc["error"] == code, (name, doc)
            assert detail in doc["detail"], (name, doc["detail"])
        wrong_type = http.post("/invocations", content=b"a,b\n1,2", headers={"Content-Type": "text/csv"})
        assert wrong_type.status_code == 415 and "text/csv" in wrong_type.json()["detail"]
        assert http.get("/invocations").status_code == 405
        missing = http.get("/nope")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)  # fmt: skip


@hsettings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_bodies_never_get_a_5xx(endpoint: Endpoint, body: dict, data: st.DataObject) -> None:
    columns, valid = body["columns"], body["data"][0]

    def mutated_row(edits: list[tuple[int, Any]], cut: int) -> list[Any]:
        row = list(valid)
        for index, value in edits:
            row[index % len(row)] = value
        return row[: len(row) - cut]

    rows = st.builds(mutated_row, st.lists(st.tuples(st.integers(0, 500), json_values), max_size=3), st.integers(0, 1))
    shape = data.draw(
        st.one_of(
            json_values,
            st.fixed_dictionaries({"columns": st.just(columns), "data": st.lists(rows, max_size=3)}),
            st.fixed_dictionaries(
                {"instances": st.lists(rows.map(lambda r: dict(zip(columns, r, strict=False))), max_size=3)}
            ),
            st.fixed_dictionaries({"instances": st.lists(st.dictionaries(st.sampled_from(columns), json_values))}),
        )
    )
    response = endpoint.http.post(
        "/invocations", content=orjson.dumps(shape), headers={"Content-Type": "application/json"}
    )
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        doc = response.json()
        assert set(doc) == {"error", "detail"} and doc["detail"]
