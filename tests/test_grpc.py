"""The gRPC transport on a real grpc.aio server: v1 task API, KServe v2, health, reflection, cancellation."""

from __future__ import annotations

import filecmp
import json
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from service import __version__
from service.grpc import converters as cv
from service.grpc import tensors
from service.grpc.generated.inference import grpc_service_pb2 as ipb
from service.grpc.generated.squeezeserve.v1 import squeezeserve_pb2 as pb
from service.grpc.server import SERVICE_NAMES
from service.runtime.ort_runtime import OrtRuntime
from service.tasks.base import AnswerParams, ClassifyParams, QAInput, TextInput, TokenClassifyParams
from service.v2.tasks import entity_dict
from service.v2.types import EXTENSIONS, InferRequest, Tensor
from tests.harness import RunningServer, running_server, settings_for, wait_until

ROOT = Path(__file__).resolve().parent.parent
TEXTS = ["a truly wonderful film", "the plot made no sense at all", "fine"]
NER_TEXT = "Ada Lovelace worked with Charles Babbage in London"
CONTEXT = "The treaty was signed in Vienna in 1815 by eleven countries after long talks."


def _same(got: Sequence[Sequence[Any]], want: Sequence[Sequence[Any]]) -> None:
    """Per-input results equal up to float32 (the wire type of scores)."""
    assert [len(r) for r in got] == [len(r) for r in want]
    for got_row, want_row in zip(got, want):
        for g, w in zip(got_row, want_row):
            assert asdict(g) == pytest.approx(asdict(w), abs=1e-6)


def test_committed_stubs_are_what_the_generator_makes(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), str(tmp_path)], check=True, timeout=60)
    fresh, committed = tmp_path / "service/grpc/generated", ROOT / "service/grpc/generated"

    def files(root: Path) -> set[str]:
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}

    assert files(fresh) == files(committed), "run `make proto` and commit service/grpc/generated/"
    _, mismatch, errors = filecmp.cmpfiles(fresh, committed, sorted(files(fresh)), shallow=False)
    assert not mismatch and not errors, f"stale generated files {mismatch + errors}: run `make proto`"


def test_v1_classify_matches_the_service(server: RunningServer) -> None:
    inputs = [TextInput(TEXTS[0]), TextInput(TEXTS[1], "but the music was great")]
    for params in (ClassifyParams(), ClassifyParams(top_k=None), ClassifyParams(top_k=2, function_to_apply="sigmoid")):
        request = pb.ClassifyRequest(inputs=cv.text_inputs_to_pb(inputs), parameters=cv.classify_params_to_pb(params))
        with server.stubs() as (v1, _):
            response, call = v1.Classify.with_call(request, timeout=30)
        direct = server.run(server.core.service.classify(None, inputs, params))
        assert response.model == direct.model == "sequence-classification"
        _same(cv.label_scores_from_pb(response.results), direct.results)
        timings = dict(call.trailing_metadata())
        for key in ("x-timing-tokenize-ms", "x-timing-queue-ms", "x-timing-inference-ms", "x-timing-total-ms"):
            assert float(timings[key]) >= 0
    labels = {"model": direct.model, "task": "sequence-classification", "transport": "grpc", "outcome": "ok"}
    assert server.metric("squeezeserve_requests_total", **labels) >= 3


def test_v1_unset_parameters_are_the_pipeline_defaults() -> None:
    assert cv.classify_params_from_pb(pb.ClassifyParameters()) == ClassifyParams()
    assert cv.classify_params_from_pb(pb.ClassifyParameters(all_labels=True)).top_k is None
    assert cv.token_params_from_pb(pb.TokenClassifyParameters()) == TokenClassifyParams()
    assert cv.token_params_from_pb(pb.TokenClassifyParameters(ignore_labels_set=True)).ignore_labels == ()
    assert cv.answer_params_from_pb(pb.AnswerParameters()) == AnswerParams()
    assert cv.model_from_pb("") is None and cv.model_to_pb(None) == ""


def test_v1_parameter_converters_round_trip() -> None:
    for c in (ClassifyParams(top_k=None), ClassifyParams(top_k=3, function_to_apply="none", truncation=True)):
        assert cv.classify_params_from_pb(cv.classify_params_to_pb(c)) == c
    for t in (TokenClassifyParams("max", ("O", "B-PER"), 16), TokenClassifyParams(ignore_labels=())):
        assert cv.token_params_from_pb(cv.token_params_to_pb(t)) == t
    for a in (AnswerParams(top_k=4, doc_stride=32, align_to_words=False), AnswerParams(handle_impossible_answer=True)):
        assert cv.answer_params_from_pb(cv.answer_params_to_pb(a)) == a
    inputs = [TextInput("a", "b"), TextInput("c")]
    assert cv.text_inputs_from_pb(cv.text_inputs_to_pb(inputs)) == inputs
    assert cv.qa_inputs_from_pb(cv.qa_inputs_to_pb([QAInput("q", "c")])) == [QAInput("q", "c")]


def test_v1_token_classify_and_answer_match_the_service(server: RunningServer) -> None:
    ner_inputs = [TextInput(NER_TEXT), TextInput("Paris is big")]
    qa_inputs = [QAInput("Where was it signed?", CONTEXT), QAInput("When?", CONTEXT)]
    with server.stubs() as (v1, _):
        for params in (TokenClassifyParams(), TokenClassifyParams("simple", ())):
            request = pb.TokenClassifyRequest(
                inputs=cv.token_inputs_to_pb(ner_inputs), parameters=cv.token_params_to_pb(params)
            )
            response = v1.TokenClassify(request, timeout=30)
            direct = server.run(server.core.service.tag_tokens(None, ner_inputs, params))
            _same(cv.entities_from_pb(response.results), direct.results)
        qa_params = AnswerParams(top_k=2)
        request = pb.AnswerRequest(
            model="question-answering",
            inputs=cv.qa_inputs_to_pb(qa_inputs),
            parameters=cv.answer_params_to_pb(qa_params),
        )
        answers = v1.Answer(request, timeout=30)
    direct_qa = server.run(server.core.service.answer(None, qa_inputs, qa_params))
    assert answers.model == "question-answering"
    _same(cv.answers_from_pb(answers.results), direct_qa.results)


def test_list_models(server: RunningServer) -> None:
    with server.stubs() as (v1, _):
        response = v1.ListModels(pb.ListModelsRequest(), timeout=10)
    assert cv.model_infos_from_pb(response.models) == server.core.registry.statuses()
    assert [m.name for m in response.models] == [
        "question-answering",
        "sequence-classification",
        "token-classification",
    ]


def test_v2_health_and_metadata(server: RunningServer) -> None:
    with server.stubs() as (_, v2):
        assert v2.ServerLive(ipb.ServerLiveRequest(), timeout=5).live
        assert v2.ServerReady(ipb.ServerReadyRequest(), timeout=5).ready
        assert v2.ModelReady(ipb.ModelReadyRequest(name="token-classification"), timeout=5).ready
        assert v2.ModelReady(ipb.ModelReadyRequest(name="token-classification", version="1"), timeout=5).ready
        meta = v2.ServerMetadata(ipb.ServerMetadataRequest(), timeout=5)
        model = v2.ModelMetadata(ipb.ModelMetadataRequest(name="question-answering"), timeout=5)
    assert (meta.name, meta.version, list(meta.extensions)) == ("squeezeserve", __version__, list(EXTENSIONS))
    metadata = tensors.model_metadata_from_pb(model)
    assert metadata.platform == "onnxruntime_onnx" and metadata.versions == ["1"]
    assert [(t.name, t.datatype, t.shape) for t in metadata.inputs] == [
        ("question", "BYTES", (-1,)),
        ("context", "BYTES", (-1,)),
    ]
    assert metadata.properties["task"] == "question-answering"


def _classify_v2(server: RunningServer, request: ipb.ModelInferRequest) -> list[Tensor]:
    with server.stubs() as (_, v2):
        response, call = v2.ModelInfer.with_call(request, timeout=30)
    assert len(response.raw_output_contents) == len(response.outputs) and not response.outputs[0].HasField("contents")
    assert "x-timing-total-ms" in dict(call.trailing_metadata())
    return tensors.infer_response_from_pb(response).outputs


def test_v2_infer_raw_and_contents_agree_with_v1_and_the_service(server: RunningServer) -> None:
    raw = tensors.infer_request_to_pb(
        "sequence-classification", "1", InferRequest([Tensor("text", "BYTES", (3,), TEXTS)], {"top_k": 0}, id="r1")
    )
    contents = ipb.ModelInferRequest(
        model_name="sequence-classification", parameters={"top_k": ipb.InferParameter(int64_param=0)}
    )
    contents.inputs.add(name="text", datatype="BYTES", shape=[3, 1]).contents.bytes_contents.extend(
        t.encode() for t in TEXTS
    )
    labels, scores = _classify_v2(server, raw)
    assert (labels.shape, scores.shape, scores.datatype) == ((3, 2), (3, 2), "FP32")
    assert _classify_v2(server, contents) == [labels, scores]
    direct = server.run(server.core.service.classify(None, [TextInput(t) for t in TEXTS], ClassifyParams(top_k=None)))
    assert labels.data == [x.label for r in direct.results for x in r]
    assert scores.data == pytest.approx([x.score for r in direct.results for x in r], abs=1e-6)
    with server.stubs() as (v1, _):
        request = pb.ClassifyRequest(inputs=[pb.TextInput(text=t) for t in TEXTS], parameters={"all_labels": True})
        via_v1 = v1.Classify(request, timeout=30)
    assert [x.score for r in via_v1.results for x in r.items] == pytest.approx(scores.data, abs=1e-7)


def test_v2_ner_and_qa_agree_with_the_service(server: RunningServer) -> None:
    ner = InferRequest([Tensor("text", "BYTES", (1,), [NER_TEXT])], {"aggregation_strategy": "first"})
    (entities,) = _classify_v2(server, tensors.infer_request_to_pb("token-classification", "", ner))
    direct = server.run(server.core.service.tag_tokens(None, [TextInput(NER_TEXT)], TokenClassifyParams("first")))
    got = json.loads(entities.data[0])
    assert len(got) == len(direct.results[0])
    for g, w in zip(got, direct.results[0]):
        assert g == pytest.approx(entity_dict(w), abs=1e-6)
    question = Tensor("question", "BYTES", (2,), ["Where?", "When was it?"])
    qa = InferRequest([question, Tensor("context", "BYTES", (2,), [CONTEXT, CONTEXT])], {"top_k": 2})
    answer, score, start, end = _classify_v2(server, tensors.infer_request_to_pb("question-answering", "", qa))
    assert (start.datatype, start.shape) == ("INT64", (2, 2))
    want = server.run(server.core.service.answer(None, [QAInput(q, CONTEXT) for q in question.data], AnswerParams(2)))
    flat = [a for r in want.results for a in r]
    assert answer.data == [a.answer for a in flat] and start.data == [a.start for a in flat]
    assert end.data == [a.end for a in flat] and score.data == pytest.approx([a.score for a in flat], abs=1e-6)


def test_raw_bytes_elements_round_trip() -> None:
    elements = [b"", "héllo".encode(), b"\x00\x01" * 300]
    raw = tensors.bytes_elements_to_raw(elements)
    assert raw[:4] == b"\x00\x00\x00\x00" and tensors.bytes_elements_from_raw(raw, "x") == elements
    headers, buffers = tensors.output_tensors_to_pb([Tensor("score", "FP32", (2,), [0.5, 0.25])])
    assert np.frombuffer(buffers[0], "<f4").tolist() == [0.5, 0.25] and headers[0].datatype == "FP32"


def _statuses(channel: grpc.Channel) -> set[int]:
    health = health_pb2_grpc.HealthStub(channel)
    return {health.Check(health_pb2.HealthCheckRequest(service=n), timeout=5).status for n in ["", *SERVICE_NAMES]}


def _set_serving(server: RunningServer, serving: bool) -> None:
    async def flip() -> None:  # set_serving belongs on the server's loop, like the lifecycle calls it
        server.health.set_serving(serving)

    server.run(flip())


def test_health_follows_readiness_and_the_lifecycle_switch(server: RunningServer) -> None:
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    with server.channel() as channel:
        assert _statuses(channel) == {serving}
        server.core.plane.begin_drain()
        try:
            assert _statuses(channel) == {not_serving}
        finally:
            server.core.plane._phase = "serving"
        assert _statuses(channel) == {serving}
        _set_serving(server, False)
        try:
            assert _statuses(channel) == {not_serving}
        finally:
            _set_serving(server, True)
        assert _statuses(channel) == {serving}
        with pytest.raises(grpc.RpcError) as info:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_watch_hears_the_switch(server: RunningServer) -> None:
    with server.channel() as channel:
        stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=10)
        try:
            assert next(stream).status == health_pb2.HealthCheckResponse.SERVING
            _set_serving(server, False)
            assert next(stream).status == health_pb2.HealthCheckResponse.NOT_SERVING
        finally:
            stream.cancel()
            _set_serving(server, True)


def test_reflection_lists_the_services(server: RunningServer) -> None:
    with server.channel() as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert set(SERVICE_NAMES) <= services
        method = database.FindFileContainingSymbol("squeezeserve.v1.Inference")
        assert [s.name for s in method.service] == ["Inference"]


def test_a_cancelled_call_drops_its_queued_rows(
    store: Path, monkeypatch: pytest.MonkeyPatch, gate: threading.Event
) -> None:
    model = "sequence-classification"
    with running_server(settings_for(store, max_batch_delay_ms=0.0)) as running:
        entered, batches = threading.Event(), []
        original = OrtRuntime.run

        def slow_run(self: OrtRuntime, feeds: Any) -> list[np.ndarray]:
            batches.append(int(feeds["attention_mask"].shape[0]))  # rows, in either layout
            entered.set()
            gate.wait(10)
            return original(self, feeds)

        monkeypatch.setattr(OrtRuntime, "run", slow_run)
        with running.stubs() as (v1, _):
            first = v1.Classify.future(pb.ClassifyRequest(inputs=[pb.TextInput(text="runs first")]), timeout=30)
            assert entered.wait(10)
            waiting = pb.ClassifyRequest(inputs=[pb.TextInput(text=f"waits {i}") for i in range(3)])
            second = v1.Classify.future(waiting, timeout=30)
            wait_until(lambda: running.metric("squeezeserve_queue_rows", model=model) == 3, what="rows queued")
            second.cancel()
            cancelled = {"model": model, "task": model, "transport": "grpc", "outcome": "cancelled"}
            wait_until(lambda: running.metric("squeezeserve_requests_total", **cancelled) == 1, what="handler done")
            gate.set()
            assert len(first.result(timeout=30).results) == 1
            dropped = {"model": model, "reason": "cancelled"}
            wait_until(lambda: running.metric("squeezeserve_rows_dropped_total", **dropped) == 3, what="rows dropped")
        assert batches == [1]  # the runner never saw the cancelled rows
