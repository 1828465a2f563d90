"""The KServe v2 mapping over the real service (transport-independent part)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from service.dataplane import DataPlane
from service.errors import InvalidInput, ModelNotFound
from service.metrics import Metrics
from service.pipeline import InferenceService
from service.tasks.base import AnswerParams, ClassifyParams, QAInput, TextInput, TokenClassifyParams
from service.v2 import codec
from service.v2.types import InferRequest, InferResponse, Tensor
from tests.test_service import _run


def _deadline() -> float:
    return time.monotonic() + 30


async def _v2(service: InferenceService, model: str, version: str, request: InferRequest) -> tuple[InferResponse, Any]:
    """A v2 request through the DataPlane, as both transports make it."""
    plane = DataPlane(service.registry.settings, service.registry, service, Metrics(CollectorRegistry()))
    with plane.call("test", None, model, version) as call:
        return await codec.infer(call, request, _deadline())


def test_v2_classification_matches_the_task_api(store: Path) -> None:
    async def body(service: InferenceService) -> None:
        texts = ["a fine day", "rain again"]
        request = InferRequest([Tensor("text", "BYTES", (2,), [t.encode() for t in texts])], {"top_k": 0})
        response, _ = await _v2(service, "sequence-classification", "", request)
        labels, scores = response.outputs
        assert labels.shape == scores.shape == (2, 2) and scores.datatype == "FP32"
        direct = await service.classify(None, [TextInput(t) for t in texts], ClassifyParams(top_k=None))
        assert labels.data == [x.label for r in direct.results for x in r]
        assert scores.data == pytest.approx([x.score for r in direct.results for x in r], abs=1e-6)

    _run(store, body)


def test_v2_ner_and_qa(store: Path) -> None:
    async def body(service: InferenceService) -> None:
        ner_req = InferRequest(
            [Tensor("text", "BYTES", (1, 1), ["Ada lives in Paris"])], {"aggregation_strategy": "simple"}
        )
        response, _ = await _v2(service, "token-classification", "1", ner_req)
        (entities,) = response.outputs
        direct = await service.tag_tokens(None, [TextInput("Ada lives in Paris")], TokenClassifyParams("simple"))
        assert json.loads(entities.data[0]) == [codec.tasks.entity_dict(e) for e in direct.results[0]]
        ctx = "The treaty was signed in Vienna."
        qa_req = InferRequest(
            [Tensor("question", "BYTES", (1,), ["Where?"]), Tensor("context", "BYTES", (1,), [ctx])],
            {"top_k": 3},
            outputs=["answer", "start", "end"],
        )
        response, _ = await _v2(service, "question-answering", "", qa_req)
        answer, start, end = response.outputs
        assert answer.shape == (1, 3) and start.datatype == "INT64"
        for a, s, e in zip(answer.data, start.data, end.data):
            assert ctx[s:e] == a
        direct_qa = await service.answer(None, [QAInput("Where?", ctx)], AnswerParams(top_k=3))
        assert answer.data == [a.answer for a in direct_qa.results[0]]

    _run(store, body)


@pytest.mark.parametrize(
    ("inputs", "params", "message"),
    [
        ([Tensor("txt", "BYTES", (1,), ["x"])], {}, "unknown input"),
        ([Tensor("text", "FP32", (1,), [1.0])], {}, "must be BYTES"),
        ([Tensor("text", "BYTES", (2,), ["x"])], {}, "2 elements|1 elements"),
        ([Tensor("text", "BYTES", (1,), [b"\xff"])], {}, "UTF-8"),
        ([Tensor("text", "BYTES", (1,), ["x"])], {"top_k": "two"}, "top_k"),
        ([Tensor("text_pair", "BYTES", (1,), ["x"])], {}, "missing input"),
    ],
)
def test_v2_bad_requests_are_invalid_input(store: Path, inputs: list[Tensor], params: dict, message: str) -> None:
    async def body(service: InferenceService) -> None:
        with pytest.raises(InvalidInput, match=message):
            await _v2(service, "sequence-classification", "", InferRequest(inputs, params))

    _run(store, body)


def test_v2_unknown_model_and_version(store: Path) -> None:
    async def body(service: InferenceService) -> None:
        request = InferRequest([Tensor("text", "BYTES", (1,), ["x"])])
        with pytest.raises(ModelNotFound):
            await _v2(service, "nope", "", request)
        with pytest.raises(ModelNotFound, match="version"):
            await _v2(service, "sequence-classification", "7", request)
        status = next(s for s in service.registry.statuses() if s.name == "question-answering")
        meta = codec.model_metadata(status)
        assert [i.name for i in meta.inputs] == ["question", "context"] and meta.platform == "onnxruntime_onnx"

    _run(store, body)
