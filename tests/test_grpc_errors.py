"""Every error kind through the gRPC transport, with the exact status code of service.errors.ERROR_TABLE."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.errors import (
    ERROR_TABLE,
    BodyTooLarge,
    Cancelled,
    DeadlineExceeded,
    HeadersTooLarge,
    InvalidInput,
    ModelNotFound,
    NotReady,
    Overloaded,
    RuntimeFailure,
    ServiceError,
    WrongTask,
)
from service.grpc import tensors
from service.grpc.errors import status_of
from service.grpc.generated.inference import grpc_service_pb2 as ipb
from service.grpc.generated.squeezeserve.v1 import squeezeserve_pb2 as pb
from service.pipeline import InferenceService
from service.runtime.ort_runtime import OrtRuntime
from service.v2.types import InferRequest, Tensor
from tests.harness import RunningServer, running_server, settings_for

CLS = "sequence-classification"


def _error(call: Callable[..., Any], request: Any, timeout_s: float = 30.0) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=timeout_s)
    return info.value


def _classify(*texts: str, model: str = "", **params: Any) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(model=model, inputs=[pb.TextInput(text=t) for t in texts], parameters=params)


def _infer(model: str, *tensors_: Tensor, **params: Any) -> ipb.ModelInferRequest:
    return tensors.infer_request_to_pb(model, "", InferRequest(list(tensors_), params))


def _texts(*values: str) -> Tensor:
    return Tensor("text", "BYTES", (len(values),), list(values))


def test_invalid_input_is_invalid_argument(server: RunningServer) -> None:
    with server.stubs() as (v1, v2):
        cases = [
            (v1.Classify, _classify("ok", "  ")),
            (v1.Classify, _classify(*["x"] * 65)),
            (v1.Classify, _classify()),
            (v1.Classify, _classify("ok", top_k=2, all_labels=True)),
            (v1.TokenClassify, pb.TokenClassifyRequest(inputs=[""])),
            (v1.Answer, pb.AnswerRequest(inputs=[pb.QAInput(question="where?", context="")])),
            (v1.Answer, pb.AnswerRequest(inputs=[pb.QAInput(question="q", context="c")], parameters={"top_k": 0})),
            (v2.ModelInfer, _infer(CLS, _texts(""))),
            (v2.ModelInfer, _infer(CLS, _texts("a"), top_k="three")),
        ]
        for call, request in cases:
            error = _error(call, request)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (request, error.details())
        assert "too many inputs" in _error(v1.Classify, _classify(*["x"] * 65)).details()


def test_wrong_task_is_invalid_argument(server: RunningServer) -> None:
    with server.stubs() as (v1, _):
        error = _error(v1.Classify, _classify("hello", model="question-answering"))
        token = _error(v1.TokenClassify, pb.TokenClassifyRequest(model=CLS, inputs=["hello"]))
    assert error.code() == token.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "question-answering" in error.details()


def _bad_tensor_requests() -> list[tuple[str, ipb.ModelInferRequest]]:
    fp32 = ipb.ModelInferRequest(model_name=CLS)
    fp32.inputs.add(name="text", datatype="FP32", shape=[1]).contents.fp32_contents.append(1.0)
    both = _infer(CLS, _texts("a"))
    both.inputs[0].contents.bytes_contents.append(b"a")
    truncated = _infer(CLS, _texts("hello"))
    truncated.raw_input_contents[0] = truncated.raw_input_contents[0][:-2]
    extra_buffer = _infer(CLS, _texts("hello"))
    extra_buffer.raw_input_contents.append(b"")
    wrong_shape = _infer(CLS, Tensor("text", "BYTES", (3,), ["a", "b"]))
    unknown_type = _infer(CLS, _texts("a"))
    unknown_type.inputs[0].datatype = "STRING"
    return [
        ("a FP32 text", fp32),
        ("raw and contents together", both),
        ("a truncated raw BYTES element", truncated),
        ("more raw buffers than inputs", extra_buffer),
        ("a shape that does not match the data", wrong_shape),
        ("an unknown datatype", unknown_type),
        ("an unknown input", _infer(CLS, Tensor("sentence", "BYTES", (1,), ["a"]))),
        ("a missing input", _infer("question-answering", Tensor("question", "BYTES", (1,), ["q"]))),
        ("an unknown output", tensors.infer_request_to_pb(CLS, "", InferRequest([_texts("a")], outputs=["logits"]))),
    ]


def test_bad_tensors_are_invalid_argument(server: RunningServer) -> None:
    with server.stubs() as (_, v2):
        for what, request in _bad_tensor_requests():
            error = _error(v2.ModelInfer, request)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (what, error.code(), error.details())


def test_unknown_models_are_not_found(server: RunningServer) -> None:
    with server.stubs() as (v1, v2):
        errors = [
            _error(v1.Classify, _classify("hello", model="../../etc/passwd")),
            _error(v1.Answer, pb.AnswerRequest(model="nope", inputs=[pb.QAInput(question="q", context="c")])),
            _error(v2.ModelInfer, _infer("../../etc/passwd", _texts("hello"))),
            _error(v2.ModelMetadata, ipb.ModelMetadataRequest(name="nope")),
            _error(v2.ModelReady, ipb.ModelReadyRequest(name="nope")),
            _error(v2.ModelInfer, tensors.infer_request_to_pb(CLS, "7", InferRequest([_texts("a")]))),
            _error(v2.ModelReady, ipb.ModelReadyRequest(name=CLS, version="7")),
            _error(v2.ModelMetadata, ipb.ModelMetadataRequest(name=CLS, version="7")),
        ]
    assert [e.code() for e in errors] == [grpc.StatusCode.NOT_FOUND] * len(errors)
    assert "etc/passwd" in errors[0].details()


@contextmanager
def _queue_held(running: RunningServer, rows: int) -> Iterator[None]:
    """Another request's rows announced to the real batcher (being tokenized): the queue is full."""
    held = running.core.registry.resolve(CLS, None).batcher.expecting(rows)

    async def enter() -> None:
        held.__enter__()

    async def leave() -> None:
        held.__exit__(None, None, None)

    running.run(enter())
    try:
        yield
    finally:
        running.run(leave())


def test_overload_is_resource_exhausted_with_retry_metadata_and_counted(store: Path) -> None:
    overloaded = {"model": CLS, "task": CLS, "transport": "grpc", "outcome": "overloaded"}
    with running_server(settings_for(store, max_queued_rows=1, warmup=False)) as running, running.stubs() as (v1, v2):
        with _queue_held(running, 1):
            errors = [_error(v1.Classify, _classify("one")), _error(v2.ModelInfer, _infer(CLS, _texts("a")))]
        for error in errors:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
            trailing = dict(error.trailing_metadata())
            assert int(trailing["retry-after"]) >= 1 and int(trailing["grpc-retry-pushback-ms"]) >= 1
        assert running.metric("squeezeserve_requests_total", **overloaded) == 2
        assert len(v1.Classify(_classify("one"), timeout=30).results) == 1


def test_more_inputs_than_the_queue_holds_is_invalid_argument(store: Path) -> None:
    """Never servable, so never RESOURCE_EXHAUSTED (a retrying client would retry for ever): issue 13, #2."""
    with running_server(settings_for(store, max_queued_rows=1, warmup=False)) as running, running.stubs() as (v1, v2):
        for error in (
            _error(v1.Classify, _classify("one", "two")),
            _error(v2.ModelInfer, _infer(CLS, _texts("a", "b"))),
        ):
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "queues at most 1" in error.details()


def test_draining_is_not_ready_but_serves_until_the_listeners_close(server: RunningServer) -> None:
    plane = server.core.plane
    try:
        plane.begin_drain()
        with server.stubs() as (v1, v2):
            assert not v2.ServerReady(ipb.ServerReadyRequest(), timeout=5).ready
            assert not v2.ModelReady(ipb.ModelReadyRequest(name=CLS), timeout=5).ready
            assert len(v1.Classify(_classify("hello"), timeout=30).results) == 1
            plane.stop_accepting()
            codes = [
                _error(v1.Classify, _classify("hello")).code(),
                _error(v2.ModelInfer, _infer(CLS, _texts("hello"))).code(),
            ]
    finally:
        plane._phase = "serving"  # the shared server serves the other tests
    assert codes == [grpc.StatusCode.UNAVAILABLE] * 2


def test_before_models_load_everything_is_unavailable(store: Path) -> None:
    with running_server(settings_for(store), load=False) as running, running.stubs() as (v1, v2):
        assert _error(v1.Classify, _classify("hello")).code() == grpc.StatusCode.UNAVAILABLE
        assert _error(v2.ModelInfer, _infer(CLS, _texts("hello"))).code() == grpc.StatusCode.UNAVAILABLE
        assert _error(v2.ModelMetadata, ipb.ModelMetadataRequest(name=CLS)).code() == grpc.StatusCode.UNAVAILABLE
        assert v2.ServerLive(ipb.ServerLiveRequest(), timeout=5).live
        assert not v2.ServerReady(ipb.ServerReadyRequest(), timeout=5).ready
        assert not v2.ModelReady(ipb.ModelReadyRequest(name=CLS), timeout=5).ready
        with running.channel() as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING


def test_deadline_exceeded(server: RunningServer) -> None:
    context = " ".join(f"Sentence {i} tells of the city of Vienna and its long history." for i in range(400))
    request = pb.AnswerRequest(inputs=[pb.QAInput(question="Which city?", context=context)] * 4)
    with server.stubs() as (v1, _):
        assert _error(v1.Answer, request, timeout_s=0.001).code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # The service still answers afterwards.
        assert len(v1.Answer(pb.AnswerRequest(inputs=[pb.QAInput(question="q?", context="c")]), timeout=30).results)


def test_runtime_failures_are_internal_with_a_generic_message(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_run(self: OrtRuntime, feeds: Any) -> Any:
        raise RuntimeError("secret ORT detail")

    monkeypatch.setattr(OrtRuntime, "run", broken_run)
    with server.stubs() as (v1, v2), caplog.at_level(logging.ERROR):
        errors = [_error(v1.Classify, _classify("boom")), _error(v2.ModelInfer, _infer(CLS, _texts("boom")))]
    for error in errors:
        assert error.code() == grpc.StatusCode.INTERNAL
        assert error.details() == RuntimeFailure.public_message
    assert "secret ORT detail" in caplog.text  # logged on the server, never sent


def test_unexpected_exceptions_are_internal_with_a_generic_message(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def buggy(self: InferenceService, *args: Any, **kwargs: Any) -> Any:
        raise ValueError("secret bug detail")

    monkeypatch.setattr(InferenceService, "run", buggy)
    with server.stubs() as (v1, _), caplog.at_level(logging.ERROR, logger="service.grpc.errors"):
        error = _error(v1.Classify, _classify("hello"))
    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details() == RuntimeFailure.public_message
    assert "secret bug detail" in caplog.text


def test_every_error_kind_maps_through_the_table() -> None:
    errors: list[ServiceError] = [
        InvalidInput("bad"),
        BodyTooLarge("big"),
        HeadersTooLarge("many"),
        ModelNotFound("nope"),
        WrongTask("task"),
        Overloaded("busy", retry_after_s=0.2),
        NotReady("loading"),
        DeadlineExceeded("late"),
        Cancelled("gone"),
        RuntimeFailure("ORT said: secret"),
        ServiceError("secret"),
    ]
    assert {e.kind for e in errors} == set(ERROR_TABLE)
    for error in errors:
        code, message, trailing = status_of(error)
        assert code == grpc.StatusCode[ERROR_TABLE[error.kind].grpc]
        assert message == (RuntimeFailure.public_message if code == grpc.StatusCode.INTERNAL else error.message)
        assert dict(trailing) == (
            {"retry-after": "1", "grpc-retry-pushback-ms": "200"} if error.kind == "overloaded" else {}
        )
