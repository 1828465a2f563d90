"""RequestMiddleware (pure ASGI): request ids, timing headers, the body limit, cancel on disconnect.

Why pure ASGI: BaseHTTPMiddleware hides `http.disconnect` from the app, and FastAPI never cancels a
handler whose client left. This middleware reads the whole body first (so an oversized body gets
413 before any parsing or tokenization), replays it to the app, and meanwhile listens on the real
`receive()`: when the client disconnects it cancels the app task, which cancels the request's
batcher futures, so its rows are dropped before they reach ONNX Runtime. An inference request
whose queues are all full is refused (429) right after its body is read, before any parsing; an
inference request answered before its route reached the DataPlane (413, unparsable JSON, schema
errors, client gone) is counted here, with the outcome its status stands for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.admission import COUNTED_STATE_KEY, TIMINGS_STATE_KEY, TRANSPORT, InferenceRoute, inference_route
from service.api.errors import outcome_of_status, service_error_response, unexpected_error_response
from service.api.fast_path import FastPath
from service.dataplane import DataPlane
from service.errors import BodyTooLarge, HeadersTooLarge
from service.logs import REQUEST_ID_KEY, request_id
from service.pipeline import Timings

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = REQUEST_ID_KEY.encode()
_STAGES = ("tokenize", "queue", "inference", "total")
# OpenAPI `headers` of an inference response.
TIMING_HEADERS: dict[str, Any] = {
    f"X-Timing-{stage.title()}-Ms": {"description": f"{stage} time in milliseconds", "schema": {"type": "string"}}
    for stage in _STAGES
}


def request_id_of(scope: Scope) -> str:
    """The client's X-Request-Id if it is safe to echo into headers and logs, else a fresh one."""
    for name, value in scope.get("headers", ()):
        if name.lower() == REQUEST_ID_HEADER:
            return request_id(value.decode("latin-1"))
    return request_id(None)


def timing_headers(timings: Timings) -> list[tuple[bytes, bytes]]:
    seconds = (timings.tokenize_s, timings.queue_s, timings.inference_s, timings.total_s)
    return [(f"x-timing-{stage}-ms".encode(), f"{s * 1000:.3f}".encode()) for stage, s in zip(_STAGES, seconds)]


class _Responder:
    """Wraps `send`: stamps our headers on the response start and remembers how far the response got."""

    def __init__(self, send: Send, state: dict[str, Any], request_id: str) -> None:
        self._send = send
        self._state = state
        self._request_id = request_id.encode()
        self.started = False
        self.finished = False
        self.status: int | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            self.status = int(message["status"])
            headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != REQUEST_ID_HEADER]
            headers.append((REQUEST_ID_HEADER, self._request_id))
            timings = self._state.get(TIMINGS_STATE_KEY)
            if isinstance(timings, Timings):
                headers.extend(timing_headers(timings))
            message = {**message, "headers": headers}
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.finished = True
        await self._send(message)


class _ClientGone(Exception):
    pass


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            with contextlib.suppress(ValueError):
                return int(value)
    return None


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, counting streamed bytes (chunked bodies declare no length)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, gone: asyncio.Event) -> Receive:
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    return receive


async def _wait_for_disconnect(receive: Receive) -> None:
    # The body is fully read, so the server has nothing but the disconnect left to deliver.
    while (await receive())["type"] != "http.disconnect":
        pass


class RequestMiddleware:
    def __init__(self, app: ASGIApp, plane: DataPlane, early_admission: bool = True) -> None:
        self.app = app
        self.plane = plane
        self.max_body_bytes = plane.settings.max_body_bytes
        self.max_header_bytes = plane.settings.max_header_bytes
        self.max_header_count = plane.settings.max_header_count
        self.early_admission = early_admission
        self.fast_path = FastPath(plane) if plane.settings.rest_fast_path else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        request_id = state.get("request_id") or request_id_of(scope)  # the access log may have it
        state["request_id"] = request_id
        responder = _Responder(send, state, request_id)
        route = inference_route(scope.get("method", ""), scope["path"])
        if route is None:
            await self._handle(scope, receive, responder, request_id, None)
            return
        started = time.monotonic()
        try:
            await self._handle(scope, receive, responder, request_id, route)
        finally:
            if not state.get(COUNTED_STATE_KEY):
                outcome = outcome_of_status(responder.status)
                self.plane.record_refusal(TRANSPORT, route.task, route.model, outcome, time.monotonic() - started)

    async def _handle(
        self, scope: Scope, receive: Receive, responder: _Responder, request_id: str, route: InferenceRoute | None
    ) -> None:
        try:
            self._check_headers(scope)
            declared = _declared_length(scope)
            if declared is not None and declared > self.max_body_bytes:
                raise BodyTooLarge(f"request body is over the limit of {self.max_body_bytes} bytes")
            body = await _read_body(receive, self.max_body_bytes)
        except (BodyTooLarge, HeadersTooLarge) as exc:
            await service_error_response(scope["path"], exc)(scope, receive, responder)
            return
        except _ClientGone:
            return
        refusal = None
        if route is not None and self.early_admission:
            refusal = self.plane.early_refusal(TRANSPORT, route.task, route.model)
        if refusal is not None:  # the queues are full: answer before routing and parsing (counted)
            scope["state"][COUNTED_STATE_KEY] = True
            await service_error_response(scope["path"], refusal)(scope, receive, responder)
            return
        await self._run(scope, body, receive, responder, request_id)

    def _check_headers(self, scope: Scope) -> None:
        headers = scope.get("headers", ())
        size = sum(len(name) + len(value) for name, value in headers)
        if len(headers) > self.max_header_count or size > self.max_header_bytes:
            raise HeadersTooLarge(
                f"{len(headers)} headers of {size} bytes; at most {self.max_header_count} headers"
                f" of {self.max_header_bytes} bytes in all"
            )

    async def _run(self, scope: Scope, body: bytes, receive: Receive, responder: _Responder, request_id: str) -> None:
        gone = asyncio.Event()
        replay = _replay(body, gone)
        fast = self.fast_path.prepare(scope, body) if self.fast_path is not None else None
        app_task = asyncio.ensure_future(fast(responder) if fast is not None else self.app(scope, replay, responder))
        watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
        try:
            await asyncio.wait({app_task, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not app_task.done() and not responder.finished:
                gone.set()
                app_task.cancel()
                log.info("request %s: client disconnected, cancelled", request_id)
            await asyncio.wait({app_task})
        finally:
            watcher.cancel()
            app_task.cancel()  # only matters if we ourselves were cancelled (server shutdown)
        exc = None if app_task.cancelled() else app_task.exception()
        if exc is None:
            return
        if responder.started:
            raise exc  # too late to answer; the server logs it and closes the connection
        log.error("request %s failed", request_id, exc_info=exc)
        await unexpected_error_response(scope["path"])(scope, replay, responder)
