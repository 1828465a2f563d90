"""OpenTelemetry tracing: off (every call a no-op) unless an OTLP endpoint is configured.

Enabled by the standard variables (OTEL_EXPORTER_OTLP_ENDPOINT or ..._TRACES_ENDPOINT, with
OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_SERVICE_NAME, ...); the SDK and exporter come from the `otel`
extra and are imported only then. One SERVER span per request, opened by each transport's edge
with the caller's W3C `traceparent` (HTTP headers / gRPC metadata) as parent; the pipeline adds
its stages afterwards as children of that span: tokenize, queue wait, inference (batch size as
an attribute), postprocess. The stages are recorded from timestamps the pipeline takes anyway,
so the request path pays for spans only when tracing is on.

OTel's tracer provider is process-global by design; this module keeps the one tracer handle.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
DEFAULT_SERVICE_NAME = "squeezeserve"


class StageRow(Protocol):
    """service.batching.rows.RowResult, without importing the batcher."""

    @property
    def queue_s(self) -> float: ...
    @property
    def run_s(self) -> float: ...
    @property
    def batch_rows(self) -> int: ...


class _State:
    tracer: Any = None
    provider: Any = None


def requested(environ: Mapping[str, str] = os.environ) -> bool:
    return any(environ.get(name) for name in ENDPOINT_VARIABLES)


def enabled() -> bool:
    return _State.tracer is not None


def _otlp_exporter() -> Any:
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol in ("http/protobuf", "http/json"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def start(span_processor: Any = None) -> None:
    """Install an SDK provider; without `span_processor`, batches spans to the OTLP exporter."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(span_processor or BatchSpanProcessor(_otlp_exporter()))
    _State.provider, _State.tracer = provider, provider.get_tracer("squeezeserve")


def stop() -> None:
    """Flush and forget the provider (spans still queued are exported first)."""
    provider, _State.provider, _State.tracer = _State.provider, None, None
    if provider is not None:
        provider.shutdown()


@contextlib.contextmanager
def request_span(name: str, carrier: Mapping[str, str], attributes: dict[str, Any]) -> Iterator[Any]:
    """The request's SERVER span, current inside the block (None when tracing is off)."""
    if _State.tracer is None:
        yield None
        return
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    parent = TraceContextTextMapPropagator().extract(carrier)
    with _State.tracer.start_as_current_span(
        name, context=parent, kind=SpanKind.SERVER, attributes=attributes, record_exception=False
    ) as span:
        yield span


def _epoch_ns(monotonic_s: float, offset_ns: int) -> int:
    return int(monotonic_s * 1e9) + offset_ns


def record_stages(
    model: str, task: str, started: float, tokenized: float, inferred: float, done: float, rows: Sequence[StageRow]
) -> None:
    """Children of the current span for a finished request (times: time.monotonic())."""
    if _State.tracer is None or not rows:
        return
    from opentelemetry import trace

    parent = trace.get_current_span()
    parent.set_attributes({"squeezeserve.model": model, "squeezeserve.task": task, "squeezeserve.rows": len(rows)})
    offset_ns = time.time_ns() - time.monotonic_ns()
    last = max(rows, key=lambda row: row.queue_s + row.run_s)  # the row the request waited for
    queued_until = tokenized + last.queue_s
    stages: tuple[tuple[str, float, float, dict[str, Any]], ...] = (
        ("tokenize", started, tokenized, {}),
        ("queue wait", tokenized, queued_until, {}),
        ("inference", queued_until, min(queued_until + last.run_s, inferred), {"batch_size": last.batch_rows}),
        ("postprocess", inferred, done, {}),
    )
    for name, begin, end, attributes in stages:
        span = _State.tracer.start_span(name, start_time=_epoch_ns(begin, offset_ns), attributes=attributes)
        span.end(end_time=_epoch_ns(max(begin, end), offset_ns))


def error_status(description: str) -> Any:
    from opentelemetry.trace import Status, StatusCode

    return Status(StatusCode.ERROR, description)
