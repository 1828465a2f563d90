"""One case table, run through REST /v1 and gRPC squeezeserve.v1: both must give the same answer.

Each case is a request in domain terms and the error kind it must end in (None: success). The
expected HTTP status and gRPC code are those of the documented error table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from service.grpc.generated.squeezeserve.v1 import squeezeserve_pb2 as pb
from tests.harness import RunningServer

CLS, NER, QA = "sequence-classification", "token-classification", "question-answering"
DOCUMENTED = {  # kind -> (HTTP status, gRPC code), as docs/ARCHITECTURE.md#errors says
    None: (200, grpc.StatusCode.OK),
    "invalid_input": (422, grpc.StatusCode.INVALID_ARGUMENT),
    "model_not_found": (404, grpc.StatusCode.NOT_FOUND),
    "wrong_task": (400, grpc.StatusCode.INVALID_ARGUMENT),
}


@dataclass(frozen=True)
class Case:
    name: str
    task: str
    texts: list[Any]  # str for classify/NER, (question, context) for QA
    kind: str | None
    model: str = ""
    params: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case("classify", CLS, ["a fine day", "rain"], None),
    Case("classify all labels", CLS, ["a fine day"], None, params={"top_k": 2}),
    Case("ner", NER, ["Ada lived in London"], None, params={"aggregation_strategy": "simple"}),
    Case("qa", QA, [("Where?", "It was signed in Vienna.")], None, params={"top_k": 2}),
    Case("empty text", CLS, [""], "invalid_input"),
    Case("blank question", QA, [(" ", "context")], "invalid_input"),
    Case("no inputs", CLS, [], "invalid_input"),
    Case("too many inputs", CLS, ["x"] * 65, "invalid_input"),
    Case("bad top_k", CLS, ["x"], "invalid_input", params={"top_k": 0}),
    Case("bad aggregation", NER, ["x"], "invalid_input", params={"aggregation_strategy": "loudest"}),
    Case("stride without aggregation", NER, ["x"], "invalid_input", params={"stride": 4}),
    Case("too long without truncation", CLS, [" ".join(["word"] * 600)], "invalid_input"),
    Case("too long, truncated", CLS, [" ".join(["word"] * 600)], None, params={"truncation": True}),
    Case("unknown model", CLS, ["x"], "model_not_found", model="nope"),
    Case("path-like model", CLS, ["x"], "model_not_found", model="../../etc/passwd"),
    Case("wrong task", CLS, ["x"], "wrong_task", model=QA),
]


def _rest(case: Case) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {"parameters": case.params}
    if case.model:
        body["model"] = case.model
    if case.task == QA:
        body["inputs"] = [{"question": q, "context": c} for q, c in case.texts]
        return "/v1/answer", body
    body["inputs"] = list(case.texts)
    return ("/v1/classify" if case.task == CLS else "/v1/token-classify"), body


def _grpc(case: Case, v1: Any) -> tuple[Any, Any]:
    if case.task == CLS:
        inputs = [pb.TextInput(text=t) for t in case.texts]
        return v1.Classify, pb.ClassifyRequest(model=case.model, inputs=inputs, parameters=case.params)
    if case.task == NER:
        return v1.TokenClassify, pb.TokenClassifyRequest(model=case.model, inputs=case.texts, parameters=case.params)
    inputs = [pb.QAInput(question=q, context=c) for q, c in case.texts]
    return v1.Answer, pb.AnswerRequest(model=case.model, inputs=inputs, parameters=case.params)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_rest_and_grpc_agree(case: Case, server: RunningServer) -> None:
    """The same server, the same models, reached through each transport."""
    http_status, grpc_code = DOCUMENTED[case.kind]
    path, body = _rest(case)
    with server.client() as client:
        response = client.post(path, json=body)
    assert response.status_code == http_status, response.text
    if case.kind is not None:
        assert response.json()["error"]["type"] == case.kind
    with server.stubs() as (v1, _):
        method, request = _grpc(case, v1)
        try:
            reply = method(request, timeout=30)
            code = grpc.StatusCode.OK
        except grpc.RpcError as error:
            code = error.code()
    assert code == grpc_code
    if case.kind is None:  # the same results, too
        assert len(reply.results) == len(response.json()["results"])
        assert reply.model == response.json()["model"]
