"""The REST fast path: a well-formed /v1 task request served without FastAPI's per-request layers.

A lone caller's request spent ~0.25 ms between the middleware and the route's first line (routing,
dependency solving, JSON parsing and validation in Python) and ~0.1 ms turning the response into
bytes, in series with the model's run (docs/benchmarks.md, "The serving path"). Here the body is
parsed and validated in one step by pydantic's core (`model_validate_json`) into the route's own
request model, the same `TaskRoute` (tasks_v1.py) runs the same DataPlane call as the FastAPI
route, and the response is the route's response model serialized as FastAPI serializes it.

The fast path only ever *declines*, never answers differently: a body that does not validate, a
timeout header that is invalid or repeated, or any path but the three task routes goes to
FastAPI, which answers exactly as before (its 422 shape included). Errors of the call itself are
answered by the same error table (api/errors.py). A test sends the same requests both ways and
compares the responses byte for byte.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.types import Message, Scope, Send

from service.api.calls import timeout_from_header
from service.api.errors import service_error_response
from service.api.limits import TIMEOUT_HEADER
from service.api.tasks_v1 import TASK_ROUTES, TaskRoute
from service.dataplane import DataPlane
from service.errors import ServiceError

log = logging.getLogger(__name__)
_TIMEOUT_NAME = TIMEOUT_HEADER.lower().encode("latin-1")
_DECLINE = object()


def _timeout(scope: Scope) -> Any:
    """The timeout header's seconds, None when absent, _DECLINE when FastAPI should judge it."""
    values = [value for name, value in scope.get("headers", ()) if name.lower() == _TIMEOUT_NAME]
    if not values:
        return None
    if len(values) > 1:
        return _DECLINE
    try:
        return timeout_from_header(values[0].decode("latin-1"))
    except (ValidationError, UnicodeDecodeError):
        return _DECLINE


async def _no_receive() -> Message:  # a plain response never reads the request
    return {"type": "http.disconnect"}


class FastPath:
    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    def prepare(self, scope: Scope, body: bytes) -> Callable[[Send], Awaitable[None]] | None:
        """The coroutine function that serves this request, or None to leave it to FastAPI."""
        route = TASK_ROUTES.get(scope["path"]) if scope.get("method") == "POST" else None
        if route is None:
            return None
        timeout = _timeout(scope)
        if timeout is _DECLINE:
            return None
        try:
            request = route.request.model_validate_json(body)
        except ValidationError:
            return None
        return partial(self._serve, scope, route, request, timeout)

    async def _serve(
        self, scope: Scope, route: TaskRoute, request: BaseModel, timeout: float | None, send: Send
    ) -> None:
        log.debug("%s on the fast path", route.path)
        http_request = Request(scope)  # calls.py keeps its state in the scope, as for FastAPI routes
        try:
            response = await route.serve(self.plane, http_request, request, self.plane.deadline_from(timeout))
        except ServiceError as exc:
            await service_error_response(scope["path"], exc)(scope, _no_receive, send)
            return
        payload = route.response_json(response)
        headers = [(b"content-length", str(len(payload)).encode()), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
