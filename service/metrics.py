"""Every Prometheus metric of the service, registered on an injected CollectorRegistry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from service.errors import DeadlineExceeded, ServiceError
from service.logs import note_request

# Request latency on CPU spans sub-millisecond tiny models to multi-second long QA contexts.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STAGE_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_ROW_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128, 256)
PADDED_TOKEN_BUCKETS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
RATIO_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
OUTCOMES = ("ok", "invalid", "overloaded", "expired", "cancelled", "error")
_OUTCOME_BY_KIND = {
    "invalid_input": "invalid",
    "body_too_large": "invalid",
    "headers_too_large": "invalid",
    "model_not_found": "invalid",
    "wrong_task": "invalid",
    "overloaded": "overloaded",
    "deadline_exceeded": "expired",
    "cancelled": "cancelled",
    "not_ready": "error",
    "runtime": "error",
}


def outcome_of_kind(kind: str) -> str:
    return _OUTCOME_BY_KIND.get(kind, "error")


def outcome_of(error: BaseException | None) -> str:
    """The `outcome` label for a finished request (both transports use this)."""
    if error is None:
        return "ok"
    if isinstance(error, ServiceError):
        return outcome_of_kind(error.kind)
    if isinstance(error, (asyncio.CancelledError, GeneratorExit)):
        return "cancelled"
    return "error"


@dataclass
class RequestLabels:
    """Filled in by the caller as it learns them (the model is known only after resolving)."""

    task: str
    model: str = ""
    deadline: float | None = None  # time.monotonic(); set once the request's deadline is known


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._children: dict[tuple[MetricWrapperBase, tuple[str, ...]], Any] = {}
        p = "squeezeserve_"
        self.request_duration = Histogram(
            p + "request_duration_seconds",
            "Request latency, from arrival to response.",
            ("model", "task", "transport", "outcome"),
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.requests = Counter(
            p + "requests", "Requests by outcome.", ("model", "task", "transport", "outcome"), registry=registry
        )
        self.tokenize_duration = Histogram(
            p + "tokenize_duration_seconds",
            "Tokenization time per request.",
            ("model",),
            buckets=STAGE_BUCKETS_S,
            registry=registry,
        )
        self.queue_wait = Histogram(
            p + "queue_wait_seconds",
            "Time a row waited in the batch queue.",
            ("model",),
            buckets=STAGE_BUCKETS_S,
            registry=registry,
        )
        self.batch_inference = Histogram(
            p + "batch_inference_seconds",
            "ONNX Runtime time per batch.",
            ("model",),
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.batch_rows = Histogram(
            p + "batch_rows", "Rows per batch.", ("model",), buckets=BATCH_ROW_BUCKETS, registry=registry
        )
        self.batch_padded_tokens = Histogram(
            p + "batch_padded_tokens",
            "Padded tokens per batch (rows x longest row).",
            ("model",),
            buckets=PADDED_TOKEN_BUCKETS,
            registry=registry,
        )
        self.padding_efficiency = Histogram(
            p + "batch_padding_efficiency_ratio",
            "Real tokens / padded tokens per batch.",
            ("model",),
            buckets=RATIO_BUCKETS,
            registry=registry,
        )
        self.queue_rows = Gauge(p + "queue_rows", "Rows waiting in the batch queue.", ("model",), registry=registry)
        self.in_flight = Gauge(p + "requests_in_flight", "Requests being processed.", ("transport",), registry=registry)
        self.model_ready = Gauge(
            p + "model_ready", "1 when the model is loaded and warm.", ("model",), registry=registry
        )
        self.model_load = Gauge(
            p + "model_load_seconds",
            "How long each model took to become ready, by phase (open: manifest, hash, ORT sessions, "
            "tokenizer; warm_up: the peak-shape run; start: handler and batcher), and side_by_side: "
            "its one-core session for runs side by side, loaded after readiness.",
            ("model", "phase"),
            registry=registry,
        )
        self.time_to_ready = Gauge(
            p + "time_to_ready_seconds",
            "Seconds from process start until the server first became ready.",
            registry=registry,
        )
        self.unauthenticated = Counter(
            p + "unauthenticated_requests",
            "Requests refused for a missing or invalid API key.",
            ("transport", "reason"),
            registry=registry,
        )
        self.rows_dropped = Counter(
            p + "rows_dropped", "Rows dropped before inference.", ("model", "reason"), registry=registry
        )
        self.rows_discarded = Counter(
            p + "rows_discarded",
            "Rows whose batch ran but whose outputs nobody took (expired: the deadline passed during "
            "the run; cancelled: the caller left).",
            ("model", "reason"),
            registry=registry,
        )

    def child(self, metric: MetricWrapperBase, *labels: str) -> Any:
        """metric.labels(*labels), remembered. labels() checks and converts the values and takes a
        lock on every call: ~17 us each with the caches a model run leaves, several per request.
        No child is ever removed, so a remembered one stays the registry's."""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def observer_for(self, model: str) -> BatchMetrics:
        return BatchMetrics(self, model)

    @contextmanager
    def track(self, transport: str, task: str, model: str = "") -> Iterator[RequestLabels]:
        """Count one request: in-flight while it runs, then duration and outcome."""
        labels = RequestLabels(task, model)
        started = time.monotonic()
        in_flight = self.child(self.in_flight, transport)
        in_flight.inc()
        error: BaseException | None = None
        try:
            yield labels
        except BaseException as exc:
            error = exc
            raise
        finally:
            in_flight.dec()
            outcome = outcome_of(error)
            if outcome == "cancelled" and labels.deadline is not None and time.monotonic() >= labels.deadline:
                # gRPC cancels a handler when the client's deadline passes, which races the
                # service's own DeadlineExceeded at the same instant: either way it expired.
                outcome = outcome_of_kind(DeadlineExceeded.kind)
            self.record(transport, labels, outcome, time.monotonic() - started)

    def record(self, transport: str, labels: RequestLabels, outcome: str, duration_s: float) -> None:
        """Count a finished request (track() does this; transports call it for requests refused early)."""
        note_request(labels.model, labels.task)  # the access log's model and task
        key = (labels.model or "unknown", labels.task, transport, outcome)
        self.child(self.requests, *key).inc()
        self.child(self.request_duration, *key).observe(duration_s)


@dataclass(frozen=True)
class BatchMetrics:
    """The batcher's observer for one model."""

    metrics: Metrics
    model: str

    def on_queue_depth(self, rows: int) -> None:
        self.metrics.child(self.metrics.queue_rows, self.model).set(rows)

    def on_rows_dropped(self, reason: str, rows: int) -> None:
        self.metrics.rows_dropped.labels(self.model, reason).inc(rows)

    def on_rows_discarded(self, reason: str, rows: int) -> None:
        self.metrics.rows_discarded.labels(self.model, reason).inc(rows)

    def on_batch(
        self, rows: int, padded_tokens: int, real_tokens: int, queue_waits_s: list[float], run_s: float
    ) -> None:
        m, model = self.metrics, self.model
        m.child(m.batch_rows, model).observe(rows)
        m.child(m.batch_padded_tokens, model).observe(padded_tokens)
        m.child(m.padding_efficiency, model).observe(real_tokens / max(padded_tokens, 1))
        m.child(m.batch_inference, model).observe(run_s)
        queue_wait = m.child(m.queue_wait, model)
        for wait in queue_waits_s:
            queue_wait.observe(wait)
