"""The REST fast path answers exactly what FastAPI answers, and serves the well-formed /v1 requests.

The same requests go to the shared server (fast path on, the default) and to one with
`rest_fast_path=False` (FastAPI serves everything); status, content type and body must be equal
byte for byte. The fast path's debug log line says which requests it served: the well-formed task
requests, and none of those it must leave to FastAPI.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import RunningServer, running_server, settings_for

CLS, NER, QA = "sequence-classification", "token-classification", "question-answering"
CONTEXT = "The treaty was signed in Vienna in 1815 by eleven countries after long talks."

# (path, JSON body or raw bytes, extra headers, served on the fast path?)
CASES: list[tuple[str, Any, dict[str, str], bool]] = [
    ("/v1/classify", {"inputs": "I loved this film"}, {}, True),
    ("/v1/classify", {"inputs": ["Great!", "Dull, very dull."], "parameters": {"top_k": None}}, {}, True),
    ("/v1/classify", {"inputs": [{"text": "A man sleeps.", "text_pair": "Someone rests."}], "model": CLS}, {}, True),
    ("/v1/classify", {"inputs": "x", "parameters": {"function_to_apply": "sigmoid", "top_k": 2}}, {}, True),
    ("/v1/classify", {"inputs": "ünïcödé ✓ 東京"}, {"X-Request-Timeout-S": "5"}, True),
    ("/v1/token-classify", {"inputs": "Ada Lovelace lived in London"}, {}, True),
    (
        "/v1/token-classify",
        {"inputs": ["Ada Lovelace lived in London"], "parameters": {"aggregation_strategy": "simple"}},
        {},
        True,
    ),  # noqa: E501
    ("/v1/answer", {"inputs": {"question": "Where was it signed?", "context": CONTEXT}}, {}, True),
    ("/v1/answer", {"inputs": [{"question": "When?", "context": CONTEXT}], "parameters": {"top_k": 3}}, {}, True),
    # errors of the call itself, answered by the fast path from the same error table
    ("/v1/classify", {"inputs": "x", "model": "no-such-model"}, {}, True),  # 404
    ("/v1/classify", {"inputs": "x", "model": QA}, {}, True),  # 400 wrong task
    ("/v1/classify", {"inputs": "y" * 5000}, {}, True),  # 422 too long for the model
    ("/v1/classify", {"inputs": []}, {}, True),  # 422 no inputs
    # left to FastAPI: bodies that do not validate, timeouts it must judge
    ("/v1/classify", {"inputs": 5}, {}, False),
    ("/v1/classify", {"inputs": "x", "unknown": 1}, {}, False),
    ("/v1/answer", {"inputs": {"question": "q"}}, {}, False),
    ("/v1/classify", b'{"inputs": "x"', {}, False),  # not JSON
    ("/v1/classify", {"inputs": "x"}, {"X-Request-Timeout-S": "0"}, False),
    ("/v1/classify", {"inputs": "x"}, {"X-Request-Timeout-S": "soon"}, False),
]


@pytest.fixture(scope="module")
def plain(store: Path) -> Iterator[RunningServer]:
    with running_server(settings_for(store, rest_fast_path=False)) as server:
        yield server


def _post(server: RunningServer, path: str, body: Any, headers: dict[str, str]) -> tuple[int, str, bytes]:
    with server.client() as client:
        if isinstance(body, bytes):
            response = client.post(path, content=body, headers={"content-type": "application/json", **headers})
        else:
            response = client.post(path, json=body, headers=headers)
    return response.status_code, response.headers["content-type"], response.content


@pytest.mark.parametrize(("path", "body", "headers", "fast"), CASES, ids=[f"{i}-{c[0]}" for i, c in enumerate(CASES)])
def test_the_fast_path_answers_what_fastapi_answers(
    server: RunningServer,
    plain: RunningServer,
    caplog: pytest.LogCaptureFixture,
    path: str,
    body: Any,
    headers: dict[str, str],
    fast: bool,
) -> None:
    expected = _post(plain, path, body, headers)
    with caplog.at_level(logging.DEBUG, logger="service.api.fast_path"):
        caplog.clear()
        got = _post(server, path, body, headers)
    served = [r for r in caplog.records if r.name == "service.api.fast_path" and "on the fast path" in r.message]
    assert got == expected
    assert len(served) == (1 if fast else 0), (expected[0], [r.message for r in served])


def test_fast_path_requests_are_counted_like_the_others(server: RunningServer) -> None:
    labels = {"model": CLS, "task": CLS, "transport": "http", "outcome": "ok"}
    before = server.metric("squeezeserve_requests_total", **labels)
    with server.client() as client:
        response = client.post("/v1/classify", json={"inputs": "counted"})
    assert response.status_code == 200
    assert {"x-request-id", "x-timing-total-ms"} <= set(response.headers)
    assert server.metric("squeezeserve_requests_total", **labels) == before + 1
