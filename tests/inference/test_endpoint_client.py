"""The endpoint client: refused requests are not retried, answers are checked against the contract."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import orjson
import pytest

from bikeshare.gbfs.client import RetryPolicy
from bikeshare.inference.endpoint_client import EndpointClient, EndpointError, split_payload
from support.worlds import MODEL_FEATURES, EndpointServer

FAST = RetryPolicy(attempts=3, base_delay_s=0.0, max_delay_s=0.0)


def test_split_payload_sends_station_ids_first_and_nan_as_null() -> None:
    body = split_payload(["a", "b"], ["x", "y"], np.array([[1.0, np.nan], [True, 2.5]]))
    assert orjson.loads(body) == {"columns": ["station_id", "x", "y"], "data": [["a", 1.0, None], ["b", 1.0, 2.5]]}
    with pytest.raises(ValueError, match="does not match 3 stations x 2 columns"):
        split_payload(["a", "b", "c"], ["x", "y"], np.zeros((2, 2)))


def test_the_real_endpoint_answers_one_batch_for_both_targets(endpoint: EndpointServer) -> None:
    matrix = np.tile(np.arange(len(MODEL_FEATURES), dtype=np.float64), (4, 1))
    matrix[1, 0] = np.nan
    with EndpointClient(endpoint.url, retry=FAST) as client:
        answer = client.invoke(split_payload(list("abcd"), MODEL_FEATURES, matrix), rows=4, alias="production")
    assert answer.alias == "production" and answer.attempts == 1
    assert answer.station_id == list("abcd")
    assert answer.model_versions == {"bikes": "1", "docks": "1"}
    for target in ("bikes", "docks"):
        assert answer.probabilities[target].shape == (4,)
        assert ((answer.probabilities[target] >= 0) & (answer.probabilities[target] <= 1)).all()
        np.testing.assert_array_equal(
            answer.decisions[target], answer.probabilities[target] >= answer.models[target].threshold
        )


def test_a_refused_request_is_not_retried(endpoint: EndpointServer) -> None:
    sleeps: list[float] = []
    with EndpointClient(endpoint.url, retry=FAST, sleep=sleeps.append) as client:
        body = split_payload(["a"], ["bikes"], np.ones((1, 1)))  # the models need more features
        with pytest.raises(EndpointError) as missing:
            client.invoke(body, rows=1)
        with pytest.raises(EndpointError) as alias:
            client.invoke(body, rows=1, alias="canary")
    assert missing.value.status == 422 and missing.value.code == "missing_features"
    assert missing.value.attempts == 1 and not missing.value.transient
    assert "docks" in str(missing.value)
    assert alias.value.status == 400 and alias.value.attempts == 1
    assert sleeps == []


@pytest.fixture
def stub() -> Iterator[tuple[str, list[bytes]]]:
    """A loopback server answering /invocations with whatever the test queues (not the endpoint)."""
    answers: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            payload = answers.pop(0)
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", answers
    server.shutdown()
    server.server_close()


def _answer(**changes: object) -> bytes:
    doc: dict[str, object] = {
        "alias": "production",
        "models": {t: {"name": f"bikeshare-sf-{t}", "version": "1", "threshold": 0.5} for t in ("bikes", "docks")},
        "p_bikes": [0.1, 0.9],
        "p_docks": [0.2, 0.3],
        "short_bikes": [False, True],
        "short_docks": [False, False],
    }
    doc.update(changes)
    return orjson.dumps({k: v for k, v in doc.items() if v is not None})


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (b"not json", "not JSON"),
        (_answer(p_docks=[0.2]), "for 2 rows"),
        (_answer(p_bikes=[0.1, 1.5]), "outside [0, 1]"),
        (_answer(alias="staging"), "pinned to 'production'"),
        (_answer(models={"bikes": {"name": "x", "version": "1", "threshold": 0.5}}), "models.docks"),
        (_answer(short_bikes=None), "short_bikes"),
    ],
)
def test_an_answer_that_breaks_the_contract_is_an_error(
    stub: tuple[str, list[bytes]], answer: bytes, problem: str
) -> None:
    url, answers = stub
    answers.append(answer)
    with (
        EndpointClient(url, retry=FAST) as client,
        pytest.raises(EndpointError, match="breaks the wire contract") as err,
    ):
        client.invoke(split_payload(["a", "b"], ["x"], np.ones((2, 1))), rows=2, alias="production")
    assert problem in str(err.value)


def test_the_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        EndpointClient("127.0.0.1:8080")
