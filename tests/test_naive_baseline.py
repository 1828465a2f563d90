"""The naive baseline of loadtest.vs gives squeezeserve's answers on the same graph (tiny models, no load).

loadtest/naive_model.py runs one `session.run` per request with squeezeserve's own task code; the
paired comparison is only fair if it really answers the same thing, windows and all.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient

from loadtest.naive_grpc import serve
from loadtest.naive_model import NaiveModel
from loadtest.wrk import run_bounded
from service.api import converters_v1 as conv
from service.config import Settings
from service.errors import WrongTask
from service.grpc import converters as cv
from service.grpc.generated.squeezeserve.v1 import squeezeserve_pb2 as pb
from service.grpc.generated.squeezeserve.v1 import squeezeserve_pb2_grpc as pb_grpc
from service.pipeline import InferenceService, ServiceResult, Timings
from service.registry import ModelRegistry
from service.tasks.base import AnswerParams, ClassifyParams, QAInput, TextInput, TokenClassifyParams

SENTENCE = "the treaty was signed in vienna by eleven countries after a long winter of talks"
LONG = " ".join([SENTENCE] * 47)  # 705 words, > 512 tokens: several NER windows
QA_LONG = AnswerParams(top_k=3, max_seq_len=48, doc_stride=16)  # a few windows per context
CASES: list[tuple[str, list[Any], Any]] = [
    ("sequence-classification", [TextInput("good film"), TextInput("a", "b")], ClassifyParams(top_k=None)),
    ("token-classification", [TextInput("Ada Lovelace lived in London")], TokenClassifyParams(ignore_labels=())),
    ("token-classification", [TextInput(LONG)], TokenClassifyParams("simple", (), stride=64)),
    ("question-answering", [QAInput("Where was it signed?", " ".join([LONG[:300]] * 2))], QA_LONG),
]


def _squeezeserve(store: Path) -> list[list[list[Any]]]:
    """Every case through InferenceService (registry, batcher, ORT), one after another."""

    async def main() -> list[list[list[Any]]]:
        settings = Settings(store_dir=store, session_instances=1, intra_op_threads=1)
        registry = ModelRegistry(settings)
        await registry.load()
        pool = ThreadPoolExecutor(2)
        service = InferenceService(registry, pool, 30, None, settings.limits(), settings.max_queued_rows)
        try:
            return [(await service.run(registry.resolve(t, t), i, p, None)).results for t, i, p in CASES]
        finally:
            await registry.stop()
            pool.shutdown()

    return asyncio.run(main())


def _same(ours: list[list[Any]], naive: list[list[Any]]) -> None:
    assert len(ours) == len(naive)
    for a, b in zip(ours, naive):
        assert len(a) == len(b) and len(a) > 0
        for x, y in zip(a, b):
            fields_x, fields_y = asdict(x), asdict(y)
            assert fields_x.pop("score") == pytest.approx(fields_y.pop("score"), abs=1e-5)
            assert fields_x == fields_y


@pytest.fixture(scope="module")
def naive_models(store: Path) -> dict[str, NaiveModel]:
    return {task: NaiveModel(store / task, threads=1) for task in {t for t, _, _ in CASES}}


def test_naive_model_answers_what_squeezeserve_answers_windows_included(
    store: Path, naive_models: dict[str, NaiveModel]
) -> None:
    for (task, inputs, params), ours in zip(CASES, _squeezeserve(store)):
        _same(ours, naive_models[task].infer(task, inputs, params))
    for task, inputs, params in CASES[2:]:  # long NER and QA cases: several windows in one run
        assert len(naive_models[task].handler.preprocess(inputs, params).rows) > 1
    model = naive_models["question-answering"]
    with pytest.raises(WrongTask):
        model.infer("sequence-classification", [TextInput("x")], ClassifyParams())


def test_naive_rest_answers_in_squeezeserve_response_shape(
    store: Path, naive_models: dict[str, NaiveModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SQZ_NAIVE_MODEL_DIR", str(store / "token-classification"))
    monkeypatch.setenv("SQZ_NAIVE_THREADS", "1")
    import loadtest.naive_app

    app = importlib.reload(loadtest.naive_app).app
    body = {"inputs": LONG, "parameters": {"aggregation_strategy": "simple", "ignore_labels": [], "stride": 64}}
    with TestClient(app) as client:
        answer = client.post("/v1/token-classify", json=body)
        wrong_task = client.post("/v1/classify", json={"inputs": "x"})
        bad = client.post("/v1/token-classify", json={"inputs": "x", "parameters": {"aggregation_strategy": "?"}})
    _, inputs, params = CASES[2]
    results = naive_models["token-classification"].infer("token-classification", inputs, params)
    expected = conv.token_response(ServiceResult("token-classification", results, Timings(0, 0, 0, 0, 0)))
    assert answer.status_code == 200 and answer.json() == expected.model_dump(mode="json")
    assert wrong_task.status_code == 400 and wrong_task.json()["error"]["type"] == "wrong_task"
    assert bad.status_code == 422


def test_naive_grpc_answers_with_the_same_per_request_code(naive_models: dict[str, NaiveModel]) -> None:
    model = naive_models["question-answering"]
    server, port = serve(model, 0)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.InferenceStub(channel)
            _, inputs, params = CASES[-1]
            request = pb.AnswerRequest(inputs=cv.qa_inputs_to_pb(inputs), parameters=cv.answer_params_to_pb(params))
            reply = stub.Answer(request, timeout=30)
            with pytest.raises(grpc.RpcError) as refused:
                stub.Classify(pb.ClassifyRequest(inputs=[pb.TextInput(text="x")]), timeout=30)
    finally:
        server.stop(None)
    assert reply.model == "question-answering"
    _same(model.infer("question-answering", inputs, params), cv.answers_from_pb(reply.results))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_load_generators_can_run_below_the_servers_priority() -> None:
    """loadtest.vs runs wrk and k6 this way so that they take no cores from either server."""
    finished = run_bounded(["nice"], 10.0, nice=7)  # `nice` alone prints its own niceness
    assert finished.returncode == 0
    assert int(finished.stdout) == os.nice(0) + 7
