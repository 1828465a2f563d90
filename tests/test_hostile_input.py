"""Hostile and careless clients (issue 13): each reproduction gives its documented answer, counted.

Every test here failed on the code before its fix (each was checked by removing the fix).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from service.grpc.generated.squeezeserve.v1 import squeezeserve_pb2 as pb
from tests.harness import RunningServer, running_server, settings_for, single_model_store

CLS, NER, QA = "sequence-classification", "token-classification", "question-answering"
SURROGATE = '"a\\ud800b"'  # JSON text: a lone UTF-16 surrogate, legal in JSON, not encodable as UTF-8


def _requests(server: RunningServer | RunningServer, **labels: str) -> float:
    return server.metric("squeezeserve_requests_total", **labels)


# ---- 1: lone surrogates are invalid input, on every task and text field


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/classify", '{"inputs": ' + SURROGATE + "}"),
        ("/v1/classify", '{"inputs": [{"text": "ok", "text_pair": ' + SURROGATE + "}]}"),
        ("/v1/token-classify", '{"inputs": ' + SURROGATE + "}"),
        ("/v1/answer", '{"inputs": {"question": ' + SURROGATE + ', "context": "c"}}'),
        ("/v1/answer", '{"inputs": {"question": "q", "context": ' + SURROGATE + "}}"),
        (
            f"/v2/models/{CLS}/infer",
            '{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [' + SURROGATE + "]}]}",
        ),
    ],
)
def test_a_lone_surrogate_is_422_not_500(server: RunningServer, path: str, body: str) -> None:
    errors_before = _requests(server, outcome="error", transport="http")
    with server.client() as client:
        response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert "surrogate" in response.text
    assert _requests(server, outcome="error", transport="http") == errors_before


# ---- 3: requests refused before the route are counted, labelled with what is known


def test_malformed_schema_and_oversized_requests_are_counted(server: RunningServer) -> None:
    invalid_v1 = {"model": "unknown", "task": CLS, "transport": "http", "outcome": "invalid"}
    invalid_v2 = {"model": CLS, "task": CLS, "transport": "http", "outcome": "invalid"}
    before = (_requests(server, **invalid_v1), _requests(server, **invalid_v2))
    big = b"x" * (server.core.settings.max_body_bytes + 1)
    with server.client() as client:
        assert client.post("/v1/classify", content=b"{not json").status_code == 400
        assert client.post("/v1/classify", json={"inputs": 5}).status_code == 422
        assert client.post("/v1/classify", content=big).status_code == 413
        assert client.post(f"/v2/models/{CLS}/infer", content=b"{not json").status_code == 400
        assert client.post(f"/v2/models/{CLS}/infer", json={"inputs": 5}).status_code == 422
    assert (_requests(server, **invalid_v1), _requests(server, **invalid_v2)) == (
        before[0] + 3,
        before[1] + 2,
    )


def test_a_wrong_task_for_a_known_model_is_labelled_with_that_model(server: RunningServer) -> None:
    labels = {"model": QA, "task": CLS, "transport": "http", "outcome": "invalid"}
    before = _requests(server, **labels)
    with server.client() as client:
        assert client.post("/v1/classify", json={"inputs": "x", "model": QA}).status_code == 400
    assert _requests(server, **labels) == before + 1


# ---- 11: header size and count limits


def test_too_many_or_too_large_headers_are_refused(server: RunningServer) -> None:
    with server.client() as client:
        many = client.get("/healthz", headers=[(f"x-h{i}", "v") for i in range(1000)])
        assert many.status_code == 431 and "headers" in many.json()["error"]["message"]
        huge = client.get("/healthz", headers={"x-big": "v" * 100_000})
        assert huge.status_code in (400, 431)  # h11 refuses an over-long header block as it arrives
        assert client.get("/healthz").status_code == 200


# ---- 5: slow and idle clients are closed, others are served


@pytest.fixture(scope="module")
def strict_server(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One classifier with tight edges: 1 s to send a request, 1 s idle keep-alive, 4 KiB messages."""
    one = single_model_store(store, tmp_path_factory.mktemp("strict"))
    settings = settings_for(one, receive_timeout_s=1.0, keep_alive_timeout_s=1.0, max_body_bytes=4096)
    with running_server(settings) as server:
        yield server


def _closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """True when the server closes the connection (EOF) before within_s; bounded in time and count."""
    sock.settimeout(within_s)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # connects and says nothing
        b"POST /v1/classify HTTP/1.1\r\nHost: x\r\n",  # half the headers
        b'POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"inputs": ',  # half the body
    ],
    ids=["idle", "half-headers", "half-body"],
)
def test_a_request_that_never_arrives_whole_is_closed(strict_server: RunningServer, sent: bytes) -> None:
    with socket.create_connection(("127.0.0.1", strict_server.http_port), timeout=5) as slow:
        slow.sendall(sent)
        started = time.monotonic()
        with strict_server.client() as client:  # others are served meanwhile
            assert client.post("/v1/classify", json={"inputs": "fine"}).status_code == 200
        assert _closed_by_server(slow, within_s=10.0)
        assert time.monotonic() - started < 5.0


def test_a_request_trickled_after_a_whole_one_is_closed(strict_server: RunningServer) -> None:
    """Every byte resets uvicorn's keep-alive timer; the receive bound holds the next request anyway."""
    with socket.create_connection(("127.0.0.1", strict_server.http_port), timeout=5) as slow:
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert slow.recv(4096).startswith(b"HTTP/1.1 200 ")
        started = time.monotonic()
        closed = False
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 40:  # bounded: ~16 s at most
            try:
                slow.sendall(bytes([byte]))
                slow.settimeout(0.25)
                closed = slow.recv(4096) == b""
            except TimeoutError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                closed = True
            if closed:
                break
        assert closed and time.monotonic() - started < 5.0


def test_a_head_that_grows_past_the_limit_is_refused_before_it_ends(strict_server: RunningServer) -> None:
    """Headers streamed without end get 431 as soon as they pass the limit, not at the receive timeout."""
    limit = strict_server.core.settings.max_header_bytes
    with socket.create_connection(("127.0.0.1", strict_server.http_port), timeout=5) as streaming:
        streaming.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        answer = b""
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            for i in range(4 * limit // 64):  # bounded: 4x the limit in 64-byte headers, never the blank line
                streaming.sendall(b"x-h%05d: " % i + b"v" * 53 + b"\r\n")
        with contextlib.suppress(ConnectionResetError):
            while chunk := streaming.recv(4096):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["type"] == "headers_too_large"


# ---- 7 and 11: gRPC payloads that do not decode, or are over the size limit


def _raw_call(server: RunningServer, method: str, payload: bytes) -> grpc.RpcError:
    with server.channel() as channel:
        call = channel.unary_unary(method)  # no serializer: the payload goes on the wire as given
        with pytest.raises(grpc.RpcError) as info:
            call(payload, timeout=10)
    return info.value


def test_undecodable_grpc_payloads_are_invalid_argument_and_counted(strict_server: RunningServer) -> None:
    invalid = {"model": "unknown", "task": CLS, "transport": "grpc", "outcome": "invalid"}
    before = _requests(strict_server, **invalid)
    good = pb.ClassifyRequest(inputs=[pb.TextInput(text="XXXX")]).SerializeToString()
    bad_utf8 = good.replace(b"XXXX", b"\xff\xfe\xff\xfe")
    for payload in (b"\xff\xff\xff\xff garbage", bad_utf8):
        error = _raw_call(strict_server, "/squeezeserve.v1.Inference/Classify", payload)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert "Error" not in (error.details() or "") and "protobuf" in (error.details() or "")
    kserve = _raw_call(strict_server, "/inference.GRPCInferenceService/ModelInfer", b"\xff\xff\xff")
    assert kserve.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _requests(strict_server, **invalid) == before + 2


def test_grpc_messages_over_the_body_limit_are_resource_exhausted(strict_server: RunningServer) -> None:
    with strict_server.stubs() as (v1, _):
        with pytest.raises(grpc.RpcError) as info:
            v1.Classify(pb.ClassifyRequest(inputs=[pb.TextInput(text="y" * 5000)]), timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert len(v1.Classify(pb.ClassifyRequest(inputs=[pb.TextInput(text="small")]), timeout=10).results) == 1


# ---- 4: manifest file names stay inside their entry


@pytest.mark.parametrize("field", ["graph_file", "tokenizer_file"])
@pytest.mark.parametrize("escape", ["../elsewhere/model.onnx", "/etc/passwd", "sub/model.onnx", ".."])
def test_manifest_paths_cannot_leave_the_entry(tmp_path: Path, store: Path, field: str, escape: str) -> None:
    from service.manifest import ManifestError, read_manifest

    entry = tmp_path / CLS
    shutil.copytree(store / CLS, entry)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(entry / "model.onnx", outside / "model.onnx")
    manifest = entry / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), field: escape}))
    with pytest.raises(ManifestError, match="file name inside the entry"):
        read_manifest(entry)


# ---- 8: sibling rows' failures are retrieved, not logged as "never retrieved"


def test_a_failing_multi_row_request_logs_no_unretrieved_future(
    tmp_path: Path, store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """All rows of one request fail together in ORT (a real failure: the manifest claims more
    positions than the graph has); the caller gets one RuntimeFailure and the log no asyncio complaint."""
    from service.core import build_core, load_models, stop_core
    from service.errors import RuntimeFailure
    from service.tasks.base import ClassifyParams, TextInput

    shutil.copytree(store / CLS, tmp_path / CLS)
    manifest = tmp_path / CLS / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "max_seq_len": 4096}))
    long_text = " ".join(["word"] * 700)  # > 512 positions

    failed: list[bool] = []

    async def main() -> None:
        core = build_core(settings_for(tmp_path, warmup=False))
        await load_models(core)
        try:
            try:
                await core.service.classify(None, [TextInput(long_text)] * 3, ClassifyParams())
            except RuntimeFailure:  # not pytest.raises: its ExceptionInfo would keep the futures alive
                failed.append(True)
        finally:
            await stop_core(core)

    # The batcher logs the ORT failure with its traceback, whose frames hold the rows' futures; a
    # captured record would keep them alive past the test, so that logger is muted here.
    batcher_log = logging.getLogger("service.batching.batcher")
    batcher_log.disabled = True
    try:
        with caplog.at_level(logging.ERROR):
            asyncio.run(main())
            gc.collect()  # the failed request's futures are freed: an unretrieved exception logs now
    finally:
        batcher_log.disabled = False
    assert failed == [True]
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
