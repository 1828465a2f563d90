"""Arbitrary Unicode through every task on both transports: never a 5xx, only documented statuses.

Texts mix lone surrogates, controls, NUL, combining marks, right-to-left text, emoji and the
rest of Unicode. REST sends them as JSON (a lone surrogate is a legal `\\udXXX` escape); gRPC
cannot carry a lone surrogate in a protobuf string, so such a text goes on the wire as the bytes
Python's "surrogatepass" gives, which is invalid UTF-8 and must be INVALID_ARGUMENT.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.api.schemas_v1 import AnswerResponse, ClassifyResponse, TokenClassifyResponse
from service.grpc.generated.squeezeserve.v1 import squeezeserve_pb2 as pb
from tests.harness import RunningServer

EXAMPLES = 40  # per task and transport: ~4 s each on 2 cores
SPECIALS = ["\ud800", "\udfff", "\x00", "\u0301", "\u202e", "\u05d0\u05d1", "\U0001f600", "\ufeff", "\x7f", "\u200d"]
texts = st.lists(
    st.one_of(st.sampled_from(SPECIALS), st.characters(codec=None, exclude_categories=()), st.text(max_size=3)),
    max_size=12,
).map("".join)
REST_STATUSES = {200, 400, 413, 422}  # documented for these routes and reachable by text alone
RESPONSES = {
    "/v1/classify": ClassifyResponse,
    "/v1/token-classify": TokenClassifyResponse,
    "/v1/answer": AnswerResponse,
}
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def _bodies(path: str, a: str, b: str) -> dict[str, Any]:
    if path == "/v1/classify":
        return {"inputs": [{"text": a, "text_pair": b}, a]}
    if path == "/v1/token-classify":
        return {"inputs": [a, b], "parameters": {"aggregation_strategy": "simple"}}
    return {"inputs": {"question": a, "context": b}}


@pytest.mark.parametrize("path", list(RESPONSES))
def test_rest_never_fails_on_any_text(server: RunningServer, path: str) -> None:
    with server.client() as client:

        @PROPERTY
        @given(a=texts, b=texts)
        def check(a: str, b: str) -> None:
            body = json.dumps(_bodies(path, a, b))  # ensure_ascii: lone surrogates become \\udXXX escapes
            response = client.post(path, content=body, headers={"content-type": "application/json"})
            assert response.status_code in REST_STATUSES, (response.status_code, response.text)
            if response.status_code == 200:
                RESPONSES[path].model_validate(response.json())
            else:
                assert set(response.json()["error"]) == {"type", "message"}

        check()


def test_rest_v2_never_fails_on_any_text(server: RunningServer) -> None:
    with server.client() as client:

        @PROPERTY
        @given(a=texts)
        def check(a: str) -> None:
            body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [a]}]}
            response = client.post(
                "/v2/models/sequence-classification/infer",
                content=json.dumps(body),
                headers={"content-type": "application/json"},
            )
            assert response.status_code in REST_STATUSES, (response.status_code, response.text)
            assert response.status_code != 200 or [o["name"] for o in response.json()["outputs"]] == ["label", "score"]

        check()


def _grpc_request(method: str, a: str, b: str) -> bytes:
    """The request with placeholders, serialized, then the texts spliced in as (maybe invalid) UTF-8."""
    pa, pb_ = "\x01A\x01", "\x01B\x01"
    if method.endswith("/Classify"):
        message: Any = pb.ClassifyRequest(inputs=[pb.TextInput(text=pa, text_pair=pb_)])
    elif method.endswith("/TokenClassify"):
        message = pb.TokenClassifyRequest(inputs=[pa, pb_])
    else:
        message = pb.AnswerRequest(inputs=[pb.QAInput(question=pa, context=pb_)])
    wire = message.SerializeToString()
    assert len(pa.encode()) == 3  # a one-byte length prefix each: splicing must keep it right
    for placeholder, text in ((pa, a), (pb_, b)):
        data = text.encode("utf-8", "surrogatepass")[:100]
        old = bytes([len(placeholder.encode())]) + placeholder.encode()
        wire = wire.replace(old, bytes([len(data)]) + data)
    return wire


@pytest.mark.parametrize("method", ["Classify", "TokenClassify", "Answer"])
def test_grpc_never_fails_on_any_text(server: RunningServer, method: str) -> None:
    full = f"/squeezeserve.v1.Inference/{method}"
    with server.channel() as channel:
        call = channel.unary_unary(full)  # raw bytes: lone surrogates go on the wire as they are

        @PROPERTY
        @given(a=texts, b=texts)
        def check(a: str, b: str) -> None:
            try:
                call(_grpc_request(full, a, b), timeout=30)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
                assert "Exception" not in (error.details() or "")

        check()
