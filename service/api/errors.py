"""The REST error mapping: the one place where exceptions become status codes and error bodies.

Statuses come from service.errors.ERROR_TABLE. Two body shapes: `{"error": {"type", "message"}}`
everywhere except under /v2, which speaks the KServe protocol's `{"error": "..."}`.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException

from service.api.binary_v2 import BINARY_HEADER
from service.errors import ERROR_TABLE, Cancelled, InvalidInput, Overloaded, RuntimeFailure, ServiceError
from service.metrics import outcome_of_kind

log = logging.getLogger(__name__)

V2_PREFIX = "/v2"
# The error table's footnote: unparsable JSON is 400, everything else that is malformed is 422.
MALFORMED_STATUS = 400
VALIDATION_STATUS = ERROR_TABLE[InvalidInput.kind].http
_HTTP_TYPES = {400: "malformed_request", 404: "not_found", 405: "method_not_allowed"}
_MAX_REPORTED_ERRORS = 5


class ErrorDetail(BaseModel):
    type: str
    message: str


class ErrorBody(BaseModel):
    """The error shape of /v1 and the operational routes."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"error": {"type": "invalid_input", "message": "inputs[0].text is empty"}}]}
    )
    error: ErrorDetail


class V2ErrorBody(BaseModel):
    """The KServe v2 error shape."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"error": "model 'nope' not found"}]})
    error: str


def error_response(
    path: str, status: int, kind: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"error": message} if is_v2(path) else {"error": {"type": kind, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def is_v2(path: str) -> bool:
    return path == V2_PREFIX or path.startswith(V2_PREFIX + "/")


def service_error_response(path: str, exc: ServiceError) -> JSONResponse:
    status = ERROR_TABLE.get(exc.kind, ERROR_TABLE[ServiceError.kind]).http
    message = exc.message
    headers = None
    if status == ERROR_TABLE[RuntimeFailure.kind].http:
        # Runtime failures carry internal detail (shapes, ORT messages): log it, show the generic text.
        log.error("request failed (%s): %s", exc.kind, exc.message)
        message = RuntimeFailure.public_message
    if isinstance(exc, Overloaded):
        headers = {"Retry-After": str(retry_after_header(exc.retry_after_s))}
    return error_response(path, status, exc.kind, message, headers)


def retry_after_header(retry_after_s: float) -> int:
    """Whole seconds, rounded up and at least 1 (the header has no fractions; 0 invites a stampede)."""
    if not math.isfinite(retry_after_s):
        return 1
    return max(1, math.ceil(retry_after_s))


def outcome_of_status(status: int | None) -> str:
    """The metrics outcome of a response the route did not count itself (None: no response, client gone)."""
    if status is None:
        return outcome_of_kind(Cancelled.kind)
    if status < 400:
        return "ok"
    if status == MALFORMED_STATUS:
        return outcome_of_kind(InvalidInput.kind)
    kinds = [kind for kind, known in ERROR_TABLE.items() if known.http == status]
    return outcome_of_kind(kinds[0]) if kinds else outcome_of_kind(RuntimeFailure.kind)


def unexpected_error_response(path: str) -> JSONResponse:
    return error_response(
        path, ERROR_TABLE[RuntimeFailure.kind].http, RuntimeFailure.kind, RuntimeFailure.public_message
    )


def validation_message(errors: list[Any]) -> str:
    parts = []
    for error in errors[:_MAX_REPORTED_ERRORS]:
        where = ".".join(str(x) for x in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid")))
    more = len(errors) - _MAX_REPORTED_ERRORS
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


async def _on_service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return service_error_response(request.url.path, exc)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = next(e for e in errors if e.get("type") == "json_invalid")
        reason = (detail.get("ctx") or {}).get("error", "not valid JSON")
        where = f"the inference header (the body's first {BINARY_HEADER} bytes)"
        message = f"{where if BINARY_HEADER in request.headers else 'body'} is not JSON: {reason}"
        return error_response(request.url.path, MALFORMED_STATUS, "malformed_request", message)
    return error_response(request.url.path, VALIDATION_STATUS, InvalidInput.kind, validation_message(errors))


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    kind = _HTTP_TYPES.get(exc.status_code, "http_error")
    return error_response(request.url.path, exc.status_code, kind, str(exc.detail), dict(exc.headers or {}))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _on_service_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)


def documented_errors(*statuses: int, v2: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the error statuses a route can answer with."""
    model = V2ErrorBody if v2 else ErrorBody
    return {status: {"model": model, "description": _DESCRIPTIONS[status]} for status in statuses}


_DESCRIPTIONS = {
    400: "Body (or the binary extension's JSON header) is not JSON, or the model serves another task",
    404: "Unknown route or model",
    413: "Request body over the size limit",
    415: "Content-Type is neither JSON nor absent (nor octet-stream with the binary extension)",
    422: "Invalid input or parameters",
    431: "Request headers over the size or count limit",
    429: "Queue full; retry after the Retry-After header's seconds",
    500: "Inference failed (details are in the server log)",
    503: "Models loading or server draining",
    504: "Request deadline passed",
}
INFERENCE_ERRORS = (400, 404, 413, 415, 422, 429, 431, 500, 503, 504)
READ_ERRORS = (404, 413, 422, 431, 500, 503)
# What any route may answer before it runs (the middleware's limits) or when it fails.
ANY_ROUTE_ERRORS = (413, 431, 500)
