"""Logging: text or JSON lines (SQZ_LOG_FORMAT), and the access log's per-request record.

JSON mode writes one object per line for every logger (the application's, uvicorn's, grpc's):
time, level, logger, message, and the request fields a line carries (request_id, model, task,
transport, status, durations in ms). Each transport's edge opens a RequestRecord (a context
variable, so it follows the request into the tasks it spawns), Metrics.track fills in model and
task, the transport's timing helper fills in the stage durations, and the edge writes the access
line when the response is done. Secrets (the Authorization header, keys) are never put in a record.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import sys
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

ACCESS_LOGGER = "squeezeserve.access"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REQUEST_FIELDS = (
    "request_id", "transport", "method", "path", "model", "task", "status", "duration_ms",
    "tokenize_ms", "queue_ms", "inference_ms", "postprocess_ms",
)  # fmt: skip


REQUEST_ID_KEY = "x-request-id"  # the HTTP header and the gRPC metadata key, lower case
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


class _FreshIds:
    """32 hex digits, like a uuid4's: a random half per process and a counter. Unique within the
    process and, by the random half, across replicas and forked children; a uuid4 per request
    cost ~30 us of the event loop with the caches a model run leaves behind, this ~7 us."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix, self.counter = os.urandom(8).hex(), itertools.count(1)

    def __call__(self) -> str:
        return f"{self.prefix}{next(self.counter):016x}"


_fresh_id = _FreshIds()


def request_id(candidate: str | None) -> str:
    """The caller's request id if it is safe to echo into headers and logs, else a fresh one."""
    if candidate is not None and _SANE_REQUEST_ID.fullmatch(candidate):
        return candidate
    return _fresh_id()


class StageTimings(Protocol):
    """service.pipeline.Timings, without importing the pipeline (metrics, below it, uses this module)."""

    @property
    def tokenize_s(self) -> float: ...
    @property
    def queue_s(self) -> float: ...
    @property
    def inference_s(self) -> float: ...
    @property
    def postprocess_s(self) -> float: ...


@dataclass
class RequestRecord:
    """What the access line says about one request; filled in as the request learns it."""

    request_id: str
    transport: str
    method: str
    path: str
    started: float = field(default_factory=time.monotonic)
    model: str = ""
    task: str = ""
    timings: StageTimings | None = None

    def fields(self, status: int | str) -> dict[str, Any]:
        out: dict[str, Any] = {"request_id": self.request_id, "transport": self.transport, "method": self.method}
        out.update(path=self.path, status=status, duration_ms=round((time.monotonic() - self.started) * 1000, 3))
        if self.model:
            out["model"] = self.model
        if self.task:
            out["task"] = self.task
        if self.timings is not None:
            t = self.timings
            stages = (("tokenize", t.tokenize_s), ("queue", t.queue_s), ("inference", t.inference_s))
            for name, seconds in (*stages, ("postprocess", t.postprocess_s)):
                out[f"{name}_ms"] = round(seconds * 1000, 3)
        return out


current_request: ContextVar[RequestRecord | None] = ContextVar("squeezeserve_request", default=None)


def note_request(model: str = "", task: str = "", timings: StageTimings | None = None) -> None:
    """Add what is known to the current request's record (no-op outside a request)."""
    record = current_request.get()
    if record is None:
        return
    record.model = model or record.model
    record.task = task or record.task
    record.timings = timings or record.timings


def write_access_line(record: RequestRecord, status: int | str) -> None:
    fields = record.fields(status)
    message = f"{record.method} {record.path} {status} {fields['duration_ms']:.1f}ms"
    logging.getLogger(ACCESS_LOGGER).info(message, extra=fields)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")
        out: dict[str, Any] = {
            "time": stamp.replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in REQUEST_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure_logging(level: str, log_format: str) -> None:
    """Root handler on stderr; uvicorn's loggers propagate to it (uvicorn gets log_config=None)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
