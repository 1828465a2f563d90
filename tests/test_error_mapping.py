"""The error table as documented (docs/ARCHITECTURE.md#errors), and how each transport applies it.

Expected values are written out from the documentation, not recomputed from ERROR_TABLE.
"""

from __future__ import annotations

import json
import math

import grpc
import pytest

from service.api.errors import outcome_of_status, retry_after_header, service_error_response, validation_message
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
from service.grpc.errors import status_of
from service.metrics import outcome_of

DOCUMENTED = [
    (InvalidInput("bad"), 422, "INVALID_ARGUMENT", "invalid"),
    (BodyTooLarge("big"), 413, "RESOURCE_EXHAUSTED", "invalid"),
    (HeadersTooLarge("many"), 431, "RESOURCE_EXHAUSTED", "invalid"),
    (ModelNotFound("nope"), 404, "NOT_FOUND", "invalid"),
    (WrongTask("task"), 400, "INVALID_ARGUMENT", "invalid"),
    (Overloaded("busy", retry_after_s=0.2), 429, "RESOURCE_EXHAUSTED", "overloaded"),
    (NotReady("loading"), 503, "UNAVAILABLE", "error"),
    (DeadlineExceeded("late"), 504, "DEADLINE_EXCEEDED", "expired"),
    (Cancelled("gone"), 499, "CANCELLED", "cancelled"),
    (RuntimeFailure("ORT said: secret"), 500, "INTERNAL", "error"),
    (ServiceError("secret"), 500, "INTERNAL", "error"),
]


def test_the_table_covers_every_kind() -> None:
    assert {error.kind for error, *_ in DOCUMENTED} == set(ERROR_TABLE)


@pytest.mark.parametrize(("error", "http", "code", "outcome"), DOCUMENTED, ids=lambda x: getattr(x, "kind", None))
def test_each_kind_maps_to_its_documented_status(error: ServiceError, http: int, code: str, outcome: str) -> None:
    v1 = service_error_response("/v1/classify", error)
    v2 = service_error_response("/v2/models/m/infer", error)
    assert v1.status_code == v2.status_code == http
    public = "inference failed; see server logs" if http == 500 else error.message
    assert json.loads(v1.body) == {"error": {"type": error.kind, "message": public}}
    assert json.loads(v2.body) == {"error": public}
    assert ("retry-after" in v1.headers) == (http == 429)
    grpc_code, message, trailing = status_of(error)
    assert grpc_code == grpc.StatusCode[code]
    assert message == public
    assert bool(trailing) == (http == 429)
    assert outcome_of(error) == outcome
    assert outcome_of_status(http) == outcome


def test_retry_after_is_whole_seconds_rounded_up_and_at_least_one() -> None:
    assert [retry_after_header(s) for s in (0.0, 0.2, 1.0, 1.01, 7.5)] == [1, 1, 1, 2, 8]
    assert retry_after_header(math.inf) == 1 and retry_after_header(math.nan) == 1
    response = service_error_response("/v1/classify", Overloaded("busy", retry_after_s=2.2))
    assert response.headers["retry-after"] == "3"
    assert dict(status_of(Overloaded("busy", retry_after_s=2.2))[2]) == {
        "retry-after": "3",
        "grpc-retry-pushback-ms": "2200",
    }


def test_statuses_outside_the_table() -> None:
    assert [outcome_of_status(s) for s in (200, 204, 400, 405, None)] == ["ok", "ok", "invalid", "error", "cancelled"]


def test_validation_messages_name_where_and_cap_the_count() -> None:
    errors = [{"loc": ("body", "inputs", i), "msg": "bad"} for i in range(7)]
    message = validation_message(errors)
    assert message.startswith("body.inputs.0: bad; body.inputs.1: bad")
    assert message.count("bad") == 5 and message.endswith("; and 2 more")
    assert validation_message([{"msg": "whole body"}]) == "whole body"


def test_a_kind_missing_from_the_table_is_an_internal_error() -> None:
    class Unlisted(ServiceError):
        kind = "unlisted"

    assert service_error_response("/v1/classify", Unlisted("detail")).status_code == 500
    assert status_of(Unlisted("detail"))[:2] == (grpc.StatusCode.INTERNAL, "inference failed; see server logs")
    assert outcome_of_status(418) == "error"


def test_errors_read_as_their_message() -> None:
    assert str(InvalidInput("bad input")) == "bad input"
    assert str(Overloaded("busy", retry_after_s=1.0)) == "busy"
    assert validation_message([{"loc": ("body",)}]) == "body: invalid"
