"""Typed service errors and THE table mapping each kind to an HTTP status and a gRPC status name.

Transports import ERROR_TABLE and nothing else to decide a status; no transport maps exceptions
on its own. gRPC codes are given by name (grpc.StatusCode[name]) so this module imports no grpc.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


class ServiceError(Exception):
    """Base class: `kind` keys the table; the message is safe to show to the client."""

    kind: ClassVar[str] = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ServiceError):
    kind = "invalid_input"


class BodyTooLarge(ServiceError):
    kind = "body_too_large"


class HeadersTooLarge(ServiceError):
    kind = "headers_too_large"


class ModelNotFound(ServiceError):
    kind = "model_not_found"


class WrongTask(ServiceError):
    kind = "wrong_task"


class Overloaded(ServiceError):
    kind = "overloaded"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotReady(ServiceError):
    kind = "not_ready"


class DeadlineExceeded(ServiceError):
    kind = "deadline_exceeded"


class Cancelled(ServiceError):
    """The caller went away; nobody reads the answer, but metrics count it."""

    kind = "cancelled"


class RuntimeFailure(ServiceError):
    """ORT failed or produced bad output. The client sees a generic message; details are logged."""

    kind = "runtime"
    public_message: ClassVar[str] = "inference failed; see server logs"


@dataclass(frozen=True)
class ErrorStatus:
    http: int
    grpc: str


ERROR_TABLE: dict[str, ErrorStatus] = {
    InvalidInput.kind: ErrorStatus(422, "INVALID_ARGUMENT"),
    BodyTooLarge.kind: ErrorStatus(413, "RESOURCE_EXHAUSTED"),
    HeadersTooLarge.kind: ErrorStatus(431, "RESOURCE_EXHAUSTED"),
    ModelNotFound.kind: ErrorStatus(404, "NOT_FOUND"),
    WrongTask.kind: ErrorStatus(400, "INVALID_ARGUMENT"),
    Overloaded.kind: ErrorStatus(429, "RESOURCE_EXHAUSTED"),
    NotReady.kind: ErrorStatus(503, "UNAVAILABLE"),
    DeadlineExceeded.kind: ErrorStatus(504, "DEADLINE_EXCEEDED"),
    Cancelled.kind: ErrorStatus(499, "CANCELLED"),
    RuntimeFailure.kind: ErrorStatus(500, "INTERNAL"),
    ServiceError.kind: ErrorStatus(500, "INTERNAL"),
}
