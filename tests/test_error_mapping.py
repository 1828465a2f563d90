"""The error table as documented (docs/ARCHITECTURE.md#errors), and how each transport applies it.

Expected values are written out from the documentation, not recomputed from ERROR_TABLE. The
REST handlers run in the real app (in process, no models loaded, no sockets) and the gRPC mapping
against a stand-in servicer context: fast enough for mutation testing (scripts/mutation.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from fastapi import FastAPI

from service.api import create_app
from service.api.errors import outcome_of_status, retry_after_header, service_error_response, validation_message
from service.config import Settings
from service.core import build_core
from service.dataplane import DataPlane
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
from service.grpc.errors import mapped_errors, status_of
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
    assert validation_message(errors[:5]).endswith("body.inputs.4: bad")  # five: none left to mention
    assert validation_message(errors[:6]).endswith("; and 1 more")
    assert validation_message([{"msg": "whole body"}]) == "whole body"
    assert validation_message([{}]) == "invalid"


def test_a_kind_missing_from_the_table_is_an_internal_error() -> None:
    class Unlisted(ServiceError):
        kind = "unlisted"

    assert service_error_response("/v1/classify", Unlisted("detail")).status_code == 500
    assert status_of(Unlisted("detail"))[:2] == (grpc.StatusCode.INTERNAL, "inference failed; see server logs")
    assert outcome_of_status(418) == "error"


def test_errors_read_as_their_message() -> None:
    assert str(InvalidInput("bad input")) == "bad input" and InvalidInput("bad input").message == "bad input"
    assert str(Overloaded("busy", retry_after_s=1.0)) == "busy"
    assert validation_message([{"loc": ("body",)}]) == "body: invalid"


def test_runtime_failures_are_logged_with_their_kind_and_detail(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="service.api.errors"):
        service_error_response("/v1/classify", RuntimeFailure("ORT said: shape [3, 9]"))
    assert caplog.messages == ["request failed (runtime): ORT said: shape [3, 9]"]


# ---- the REST handlers, in the real app -------------------------------------------------------


class InProcess:
    """Requests straight into the ASGI app (httpx's ASGI transport: no socket, no server)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.request(method, path, **kwargs)

        return asyncio.run(send())

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)


@pytest.fixture
def app(tmp_path: Path) -> InProcess:
    """The real app over a core that has loaded nothing: every inference is refused as not ready.
    Built per test (cheap, no models), so each test exercises the handlers' installation itself."""
    return InProcess(create_app(build_core(Settings(store_dir=tmp_path)).plane))


def _v1(response: Any, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["type"] == kind
    return str(body["error"]["message"])


def _v2(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"} and isinstance(response.json()["error"], str)
    return str(response.json()["error"])


def test_the_app_maps_unparsable_json_to_400_in_both_shapes(app: InProcess) -> None:
    headers = {"content-type": "application/json"}
    message = _v1(app.post("/v1/classify", content=b"{nope", headers=headers), 400, "malformed_request")
    assert message == "body is not JSON: Expecting property name enclosed in double quotes"  # the parser's reason
    assert _v2(app.post("/v2/models/m/infer", content=b"{nope", headers=headers), 400).startswith("body is not JSON: ")
    framed = {"content-type": "application/octet-stream", "Inference-Header-Content-Length": "5"}
    assert _v2(app.post("/v2/models/m/infer", content=b"{nope", headers=framed), 400).startswith(
        "the inference header (the body's first Inference-Header-Content-Length bytes) is not JSON: "
    )


def test_the_app_maps_schema_errors_to_422_naming_where(app: InProcess) -> None:
    message = _v1(app.post("/v1/classify", json={"inputs": 5}), 422, "invalid_input")
    assert message.startswith("body.inputs")
    assert _v2(app.post("/v2/models/m/infer", json={"inputs": "x"}), 422).startswith("body.inputs")


def test_the_app_maps_routing_errors(app: InProcess) -> None:
    assert _v1(app.get("/nope"), 404, "not_found") == "Not Found"
    assert _v2(app.get("/v2/nope"), 404) == "Not Found"
    refused = app.delete("/v1/classify")
    assert _v1(refused, 405, "method_not_allowed") == "Method Not Allowed"
    assert refused.headers["allow"] == "POST"


def test_the_app_maps_service_errors_through_the_table(app: InProcess) -> None:
    assert _v1(app.post("/v1/classify", json={"inputs": "x"}), 503, "not_ready")  # early admission
    assert _v2(app.post("/v2/models/m/infer", json={"inputs": []}), 503)
    assert _v2(app.get("/v2/models/m"), 503) == "models are still loading"  # raised in the route


def test_an_unexpected_exception_is_a_generic_500(app: InProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    def bug(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("secret bug detail")

    monkeypatch.setattr(DataPlane, "call", bug)
    public = "inference failed; see server logs"
    assert _v1(app.post("/v1/classify", json={"inputs": "x"}), 500, "runtime") == public
    assert _v2(app.post("/v2/models/m/infer", json={"inputs": []}), 500) == public


# ---- the gRPC mapping, on a stand-in servicer context ------------------------------------------


class _Context:
    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str, dict[str, str]] | None = None

    async def abort(self, code: grpc.StatusCode, details: str, trailing_metadata: Any = ()) -> None:
        self.aborted = (code, details, dict(trailing_metadata))
        raise grpc.aio.AbortError()


def _mapped(raised: BaseException) -> tuple[grpc.StatusCode, str, dict[str, str]] | None:
    async def scenario() -> tuple[grpc.StatusCode, str, dict[str, str]] | None:
        context = _Context()
        with (
            pytest.raises(type(raised))
            if isinstance(raised, asyncio.CancelledError)
            else pytest.raises(grpc.aio.AbortError)
        ):
            async with mapped_errors(context):  # type: ignore[arg-type]
                raise raised
        return context.aborted

    return asyncio.run(scenario())


def test_grpc_calls_abort_with_the_tables_status(caplog: pytest.LogCaptureFixture) -> None:
    assert _mapped(NotReady("loading")) == (grpc.StatusCode.UNAVAILABLE, "loading", {})
    code, _, trailing = _mapped(Overloaded("busy", retry_after_s=1.5)) or (None, "", {})
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert trailing == {"retry-after": "2", "grpc-retry-pushback-ms": "1500"}
    with caplog.at_level(logging.ERROR, logger="service.grpc.errors"):
        failed = _mapped(ValueError("secret bug detail"))
    assert failed == (grpc.StatusCode.INTERNAL, "inference failed; see server logs", {})
    assert caplog.messages == ["gRPC request failed: unexpected ValueError in a gRPC handler: secret bug detail"]
    assert caplog.records[0].exc_info is not None  # with its trace


def test_grpc_cancellation_and_aborts_pass_through_unmapped() -> None:
    assert _mapped(asyncio.CancelledError()) is None  # the client left: unwind, do not answer
    assert _mapped(grpc.aio.AbortError()) is None  # already answered


def test_the_openapi_document_lists_each_routes_errors_with_their_body_shape(app: InProcess) -> None:
    paths = app.app.openapi()["paths"]
    v1 = paths["/v1/classify"]["post"]["responses"]
    v2 = paths["/v2/models/{name}/infer"]["post"]["responses"]
    documented = {"400", "404", "413", "415", "422", "429", "431", "500", "503", "504"}
    assert set(v1) == set(v2) == documented | {"200"}
    for responses, shape in ((v1, "ErrorBody"), (v2, "V2ErrorBody")):
        for status in documented:
            assert responses[status]["content"]["application/json"]["schema"] == {
                "$ref": f"#/components/schemas/{shape}"
            }, status
    assert "Retry-After" in v1["429"]["description"] and "deadline" in v2["504"]["description"]
