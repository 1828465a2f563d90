"""Every error kind over REST: exact status, body shape ({"error": {...}} on /v1, {"error": str} on /v2)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from service.api import converters_v1
from service.config import Settings
from service.errors import RuntimeFailure
from service.runtime.ort_runtime import OrtRuntime
from tests.harness import RunningServer, running_server, settings_for, wait_until

CLS = "sequence-classification"
V2_INFER = f"/v2/models/{CLS}/infer"


def _v2_body(*texts: str) -> dict[str, Any]:
    return {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": list(texts)}]}


def _v1_error(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}, body
    assert body["error"]["type"] == kind, body
    assert response.headers["x-request-id"]
    return str(body["error"]["message"])


def _v2_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str), body
    return str(body["error"])


# ---- 400


def test_unparsable_json_is_400(client: httpx.Client) -> None:
    headers = {"Content-Type": "application/json"}
    assert "JSON" in _v1_error(client.post("/v1/classify", content=b"{nope", headers=headers), 400, "malformed_request")
    assert _v2_error(client.post(V2_INFER, content=b"[1,"), 400)
    assert _v1_error(client.post("/v1/answer", content=b"\xff\xfe\x00"), 400, "malformed_request")


def test_wrong_task_is_400(client: httpx.Client) -> None:
    body = {"inputs": {"question": "q?", "context": "c"}, "model": CLS}
    assert "question-answering" in _v1_error(client.post("/v1/answer", json=body), 400, "wrong_task")


# ---- 404


@pytest.mark.parametrize("model", ["nope", "../../etc/passwd"])
def test_unknown_model_is_404(client: httpx.Client, model: str) -> None:
    _v1_error(client.post("/v1/classify", json={"inputs": "x", "model": model}), 404, "model_not_found")


def test_unknown_routes_and_v2_models_are_404(client: httpx.Client) -> None:
    _v1_error(client.get("/v1/nothing"), 404, "not_found")
    _v1_error(client.get("/metrics/"), 404, "not_found")
    assert "nope" in _v2_error(client.post("/v2/models/nope/infer", json=_v2_body("x")), 404)
    _v2_error(client.get("/v2/models/nope"), 404)
    _v2_error(client.get("/v2/models/nope/ready"), 404)
    _v2_error(client.get("/v2/models/..%2F..%2Fetc%2Fpasswd/infer"), 404)


# ---- 413


def test_body_over_the_limit_is_413(client: httpx.Client) -> None:
    big = {"inputs": "x" * (Settings().max_body_bytes + 1)}
    _v1_error(client.post("/v1/classify", json=big), 413, "body_too_large")
    _v2_error(client.post(V2_INFER, json={**_v2_body("x" * (Settings().max_body_bytes + 1))}), 413)


def test_streamed_body_over_the_limit_is_413(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked, counted as it streams
        yield b'{"inputs": "'
        for _ in range(20):
            yield b"x" * (Settings().max_body_bytes // 16)
        yield b'"}'

    response = client.post("/v1/classify", content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in response.request.headers
    _v1_error(response, 413, "body_too_large")


# ---- 422


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"inputs": ""}, "empty"),
        ({"inputs": ["ok", "   "]}, "empty"),
        ({"inputs": [f"text {i}" for i in range(65)]}, "too many inputs"),
        ({"inputs": []}, "no inputs"),
        ({"inputs": "x", "parameters": {"top_kk": 1}}, "top_kk"),
        ({"inputs": "x", "parameters": {"top_k": "2"}}, "top_k"),
        ({"inputs": "x", "parameters": {"top_k": 0}}, "top_k"),
        ({"inputs": "x", "parameters": {"function_to_apply": "tanh"}}, "function_to_apply"),
        ({"inputs": 5}, "inputs"),
        ({"inputs": {"text": 1}}, "inputs"),
        ({"text": "x"}, "inputs"),
        ({"inputs": "x", "model": 3}, "model"),
    ],
)
def test_invalid_classify_requests_are_422(client: httpx.Client, body: dict[str, Any], needle: str) -> None:
    assert needle in _v1_error(client.post("/v1/classify", json=body), 422, "invalid_input")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/token-classify", {"inputs": "x", "parameters": {"aggregation_strategy": "sometimes"}}),
        ("/v1/token-classify", {"inputs": "x", "parameters": {"ignore_labels": "O"}}),
        ("/v1/token-classify", {"inputs": [{"text": "x"}]}),
        ("/v1/answer", {"inputs": {"question": "q?"}}),
        ("/v1/answer", {"inputs": {"question": "q?", "context": " "}}),
        ("/v1/answer", {"inputs": {"question": "q?", "context": "c"}, "parameters": {"doc_stride": -1}}),
        ("/v1/answer", {"inputs": {"question": "q?", "context": "c"}, "parameters": {"top_n": 1}}),
    ],
)
def test_invalid_token_and_answer_requests_are_422(client: httpx.Client, path: str, body: dict[str, Any]) -> None:
    _v1_error(client.post(path, json=body), 422, "invalid_input")


def test_invalid_v2_requests_are_422(client: httpx.Client) -> None:
    bad_name = {"inputs": [{"name": "txt", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}
    assert "unknown input" in _v2_error(client.post(V2_INFER, json=bad_name), 422)
    assert _v2_error(client.post(V2_INFER, json={"inputs": "x"}), 422)
    assert _v2_error(client.post(V2_INFER, json=_v2_body(*(["x"] * 65))), 422)


def test_an_unknown_model_version_is_404(client: httpx.Client) -> None:
    """A version names a model; one that does not exist is not found, not invalid (issue 13, #9)."""
    assert "version" in _v2_error(client.post(f"/v2/models/{CLS}/versions/7/infer", json=_v2_body("x")), 404)
    assert "version" in _v2_error(client.get(f"/v2/models/{CLS}/versions/7/ready"), 404)
    assert "version" in _v2_error(client.get(f"/v2/models/{CLS}/versions/7"), 404)
    assert client.get(f"/v2/models/{CLS}/versions/1/ready").json() == {"name": CLS, "ready": True}


def test_timeout_header_must_be_a_positive_number(client: httpx.Client) -> None:
    for value in ("soon", "-1", "0", "nan"):
        response = client.post("/v1/classify", json={"inputs": "x"}, headers={"X-Request-Timeout-S": value})
        _v1_error(response, 422, "invalid_input")


# ---- 429


def test_more_inputs_than_the_queue_holds_is_422_not_429(tight_server: RunningServer) -> None:
    """On an idle queue of 1 row, 2 inputs can never be served: 422 before admission, counted as
    invalid under the model (a 429 would make a client honouring Retry-After retry for ever)."""
    invalid = {"model": CLS, "task": CLS, "transport": "http", "outcome": "invalid"}
    overloaded = {**invalid, "outcome": "overloaded"}
    before = (
        tight_server.metric("squeezeserve_requests_total", **invalid),
        tight_server.metric("squeezeserve_requests_total", **overloaded),
    )
    with tight_server.client() as client:
        response = client.post("/v1/classify", json={"inputs": ["one", "two"]})
        assert "queues at most 1" in _v1_error(response, 422, "invalid_input")
        assert "retry-after" not in response.headers
        _v2_error(client.post(V2_INFER, json=_v2_body("one", "two")), 422)
    after = (
        tight_server.metric("squeezeserve_requests_total", **invalid),
        tight_server.metric("squeezeserve_requests_total", **overloaded),
    )
    assert after == (before[0] + 2, before[1])


def test_a_full_queue_refuses_before_parsing_and_counts_it(tight_server: RunningServer) -> None:
    """Early admission: with the queue full, even a malformed body gets 429 (not 400), cheaply."""
    overloaded = {"model": CLS, "task": CLS, "transport": "http", "outcome": "overloaded"}
    before = tight_server.metric("squeezeserve_requests_total", **overloaded)
    with tight_server.client() as waiting, tight_server.client() as client, ThreadPoolExecutor(1) as pool:
        first = pool.submit(waiting.post, "/v1/classify", json={"inputs": ["sits in the queue"]})
        wait_until(lambda: tight_server.metric("squeezeserve_queue_rows", model=CLS) == 1, what="the row queued")
        garbage = client.post("/v1/classify", content=b"{not json", headers={"content-type": "application/json"})
        _v1_error(garbage, 429, "overloaded")
        assert int(garbage.headers["retry-after"]) >= 1 and garbage.headers["x-request-id"]
        v2 = client.post(V2_INFER, content=b"[]")
        _v2_error(v2, 429)
        assert client.get("/v1/models").status_code == 200  # only inference routes are refused
        assert first.result(timeout=30).status_code == 200
    assert tight_server.metric("squeezeserve_requests_total", **overloaded) == before + 2
    with tight_server.client() as client:  # queue drained: the same garbage is a 400 again
        assert client.post("/v1/classify", content=b"{not json").status_code == 400


# ---- 503


def test_draining_is_not_ready_but_still_serves_then_refuses_once_the_listeners_close(
    tight_server: RunningServer,
) -> None:
    """During the drain delay load balancers see 503 readiness while requests are still served (issue 13,
    #10); only after the listeners close is new work refused."""
    plane = tight_server.core.plane
    try:
        plane.begin_drain()
        with tight_server.client() as client:
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json() == {"status": "draining"}
            v2_ready = client.get("/v2/health/ready")
            assert v2_ready.status_code == 503 and v2_ready.json() == {"ready": False}
            model_ready = client.get(f"/v2/models/{CLS}/ready")
            assert model_ready.status_code == 503 and model_ready.json() == {"name": CLS, "ready": False}
            assert client.post("/v1/classify", json={"inputs": "x"}).status_code == 200
            assert client.post(V2_INFER, json=_v2_body("x")).status_code == 200
            plane.stop_accepting()
            _v1_error(client.post("/v1/classify", json={"inputs": "x"}), 503, "not_ready")
            _v2_error(client.post(V2_INFER, json=_v2_body("x")), 503)
            assert client.get("/healthz").status_code == 200
    finally:
        plane._phase = "serving"  # the module's shared server serves the other tests


def test_before_models_load_is_503(store: Path) -> None:

    with running_server(settings_for(store), load=False) as server, server.client() as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json() == {"status": "loading"}
        _v1_error(client.post("/v1/classify", json={"inputs": "x"}), 503, "not_ready")
        _v2_error(client.post(V2_INFER, json=_v2_body("x")), 503)
        assert client.get(f"/v2/models/{CLS}/ready").json() == {"name": CLS, "ready": False}
        assert client.get("/v2/health/live").json() == {"live": True}


# ---- 504


def test_deadline_is_504(client: httpx.Client) -> None:
    headers = {"X-Request-Timeout-S": "0.000001"}
    _v1_error(client.post("/v1/classify", json={"inputs": "x"}, headers=headers), 504, "deadline_exceeded")
    _v2_error(client.post(V2_INFER, json=_v2_body("x"), headers=headers), 504)


# ---- 500


def test_runtime_failure_is_500_with_the_generic_message(client: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: OrtRuntime, feeds: Any) -> list[np.ndarray]:
        raise RuntimeError("secret ORT detail /opt/models")

    monkeypatch.setattr(OrtRuntime, "run", broken)
    response = client.post("/v1/classify", json={"inputs": "x"})
    assert _v1_error(response, 500, "runtime") == RuntimeFailure.public_message
    assert "secret" not in response.text and "Traceback" not in response.text
    assert _v2_error(client.post(V2_INFER, json=_v2_body("x")), 500) == RuntimeFailure.public_message


def test_unexpected_exception_is_500_not_4xx(client: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    def bug(*args: Any) -> None:
        raise ValueError("secret internal detail")

    monkeypatch.setattr(converters_v1, "classify_response", bug)
    response = client.post("/v1/classify", json={"inputs": "x"}, headers={"X-Request-Id": "bug-1"})
    assert _v1_error(response, 500, "runtime") == RuntimeFailure.public_message
    assert response.headers["x-request-id"] == "bug-1" and "secret" not in response.text
