"""OpenTelemetry: one SERVER span per request with the caller's trace as parent, four stage children.

The real servers (REST and gRPC, in-process) export to the SDK's in-memory exporter; the real
serving process exports over OTLP/gRPC to a receiver run by the test; a fresh
interpreter shows that without an OTLP endpoint the SDK and exporter are not even imported (the
opentelemetry API package may be: FastAPI imports it when it is installed).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from service import tracing
from service.grpc.generated.squeezeserve.v1 import squeezeserve_pb2 as pb
from service.grpc.generated.squeezeserve.v1 import squeezeserve_pb2_grpc as pb_grpc
from tests.harness import RunningServer, running_server, server_process, settings_for, single_model_store

STAGES = ["tokenize", "queue wait", "inference", "postprocess"]
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.start(SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        tracing.stop()


@pytest.fixture(scope="module")
def traced(
    spans: InMemorySpanExporter, store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A server built while tracing is on (its transports' edges add the request spans)."""
    one = single_model_store(store, tmp_path_factory.mktemp("one-model"))
    with running_server(settings_for(one)) as running:
        yield running


def _traceparent(span_id: str) -> str:
    return f"00-{CALLER_TRACE}-{span_id}-01"


def _request_tree(exporter: InMemorySpanExporter, parent_span: int) -> tuple[Any, list[Any]]:
    """The SERVER span whose parent is `parent_span`, and its children."""

    def servers_of(finished: Any) -> list[Any]:
        return [s for s in finished if s.parent is not None and s.parent.span_id == parent_span]

    # The REST span ends just after the response is sent: the client may be faster.
    deadline = time.monotonic() + 10
    while not servers_of(exporter.get_finished_spans()) and time.monotonic() < deadline:
        time.sleep(0.01)
    finished = exporter.get_finished_spans()
    servers = servers_of(finished)
    assert len(servers) == 1, [s.name for s in finished]
    server = servers[0]
    children = [s for s in finished if s.parent is not None and s.parent.span_id == server.context.span_id]
    return server, sorted(children, key=lambda s: s.start_time)


def _check_tree(server: Any, children: list[Any]) -> None:
    assert server.kind == SpanKind.SERVER and f"{server.context.trace_id:032x}" == CALLER_TRACE
    assert server.attributes["squeezeserve.model"] == "sequence-classification"
    assert [c.name for c in children] == STAGES
    assert all(c.context.trace_id == server.context.trace_id for c in children)
    assert all(server.start_time <= c.start_time <= c.end_time <= server.end_time for c in children)
    inference = children[STAGES.index("inference")]
    assert inference.attributes["batch_size"] >= 1


def test_rest_request_span_continues_the_callers_trace(traced: RunningServer, spans: InMemorySpanExporter) -> None:
    caller = "00f067aa0ba902b1"
    response = httpx.post(
        traced.url + "/v1/classify", json={"inputs": "fine"}, headers={"traceparent": _traceparent(caller)}, timeout=30
    )
    assert response.status_code == 200
    server, children = _request_tree(spans, int(caller, 16))
    _check_tree(server, children)
    assert server.name == "POST /v1/classify" and server.attributes["http.response.status_code"] == 200


def test_grpc_request_span_continues_the_callers_trace(traced: RunningServer, spans: InMemorySpanExporter) -> None:
    caller = "00f067aa0ba902b2"
    with grpc.insecure_channel(traced.address) as channel:
        request = pb.ClassifyRequest(inputs=[pb.TextInput(text="fine")])
        pb_grpc.InferenceStub(channel).Classify(request, metadata=(("traceparent", _traceparent(caller)),))
    server, children = _request_tree(spans, int(caller, 16))
    _check_tree(server, children)
    assert server.name == "squeezeserve.v1.Inference/Classify" and server.attributes["rpc.grpc.status_code"] == 0


def test_a_request_without_traceparent_starts_its_own_trace_and_probes_make_none(
    traced: RunningServer, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    for path in ("/readyz", "/healthz", "/metrics"):
        assert httpx.get(traced.url + path, timeout=10).status_code == 200
    with grpc.insecure_channel(traced.address) as channel:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert httpx.post(traced.url + "/v1/classify", json={"inputs": "fine"}, timeout=30).status_code == 200
    deadline = time.monotonic() + 10
    while not any(s.kind == SpanKind.SERVER for s in spans.get_finished_spans()) and time.monotonic() < deadline:
        time.sleep(0.01)
    roots = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert [s.name for s in roots] == ["POST /v1/classify"] and roots[0].parent is None


PROBE = (
    "import sys\n"
    "from service import tracing\n"
    "import service.server, service.api.app, service.grpc.server\n"
    "if tracing.requested():\n"
    "    tracing.start()\n"
    "ours = ('opentelemetry.sdk', 'opentelemetry.exporter')\n"
    "print(tracing.enabled(), sorted({m.split('.')[1] for m in sys.modules if m.startswith(ours)}))\n"
)


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [(None, "False []"), ("http://127.0.0.1:4317", "True ['exporter', 'sdk']")],
    ids=["off", "on"],
)
def test_opentelemetry_is_imported_only_when_an_endpoint_is_set(endpoint: str | None, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if endpoint:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, env=env)
    assert done.stdout.startswith(expected), done.stdout + done.stderr


GLOBAL_PROVIDER = (
    "import sys\n"
    "from pathlib import Path\n"
    "import httpx\n"
    "from opentelemetry import trace\n"
    "from opentelemetry.sdk.trace import TracerProvider\n"
    "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
    "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n"
    "exporter = InMemorySpanExporter()\n"
    "provider = TracerProvider()\n"
    "provider.add_span_processor(SimpleSpanProcessor(exporter))\n"
    "trace.set_tracer_provider(provider)\n"
    "from tests.harness import running_server, settings_for\n"
    "with running_server(settings_for(Path(sys.argv[1])), load=False) as server:\n"
    "    for path in ('/healthz', '/v1/models'):\n"
    "        assert httpx.get(server.url + path, timeout=10).status_code == 200\n"
    "print(sorted(s.name for s in exporter.get_finished_spans()))\n"
)


def test_an_app_wide_tracer_provider_gets_no_spans_from_fastapi_itself(tmp_path: Path) -> None:
    """A process-wide provider (as `opentelemetry-instrument` installs) must not turn on FastAPI's
    own per-request telemetry: probes would be traced and REST requests would get a second owner.
    (Its own process: the global provider can be set once.)"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    repo = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-c", GLOBAL_PROVIDER, str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=repo)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr[-2000:]


class _Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver: what the server's real exporter sends arrives here."""

    def __init__(self) -> None:
        self.spans: list[Any] = []

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the service's naming
        self.spans.extend(s for r in request.resource_spans for scope in r.scope_spans for s in scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


def test_the_serving_process_exports_over_otlp_with_the_callers_trace(store: Path, tmp_path: Path) -> None:
    collector = _Collector()
    receiver = grpc.server(futures.ThreadPoolExecutor(2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, receiver)
    port = receiver.add_insecure_port("127.0.0.1:0")
    receiver.start()
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", "OTEL_BSP_SCHEDULE_DELAY": "100"}
    caller = "00f067aa0ba902b3"

    try:
        with server_process(store, tmp_path / "server.log", **otel) as server:
            url = f"http://127.0.0.1:{server.http_port}/v1/classify"
            headers = {"traceparent": _traceparent(caller)}
            assert httpx.post(url, json={"inputs": "fine"}, headers=headers, timeout=30).status_code == 200
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and len(_of_caller(collector.spans)) < 1 + len(STAGES):
                time.sleep(0.1)
    finally:
        receiver.stop(grace=None)
    mine = _of_caller(collector.spans)
    server_spans = [s for s in mine if s.parent_span_id == bytes.fromhex(caller)]
    assert len(server_spans) == 1 and server_spans[0].name == "POST /v1/classify"
    children = sorted(
        (s for s in mine if s.parent_span_id == server_spans[0].span_id), key=lambda s: s.start_time_unix_nano
    )
    assert [c.name for c in children] == STAGES


def _of_caller(spans: list[Any]) -> list[Any]:
    return [s for s in spans if s.trace_id == bytes.fromhex(CALLER_TRACE)]
