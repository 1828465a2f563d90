"""JsonBody: the base of every request body model (strict types, no unknown fields, any content type).

FastAPI only parses JSON when the Content-Type says so, and tritonclient sends none. Such a body
reaches the model as raw bytes, which are decoded here (other non-JSON labels never get this far:
GuardMiddleware answers them with 415). A body that is not JSON fails with the
error type `json_invalid`, which the error mapping answers with 400, like FastAPI's own.
Routes that must see the raw body first (the v2 binary extension) validate it with parse_body.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import PydanticCustomError


class JsonBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _decode_raw_body(cls, data: Any) -> Any:
        if not isinstance(data, (bytes, bytearray)):
            return data
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise PydanticCustomError("json_invalid", "JSON decode error: {error}", {"error": str(exc)}) from None


class StrictModel(BaseModel):
    """Nested request parts: same strictness as the body."""

    model_config = ConfigDict(extra="forbid", strict=True)


B = TypeVar("B", bound=BaseModel)


def parse_body(model: type[B], raw: bytes, missing_if_empty: bool = True) -> B:
    """Validate a body read by the route itself, failing as FastAPI's own body parsing does.

    An empty body is a missing one (422), unless missing_if_empty is off: then it is empty JSON (400).
    """
    if not raw and missing_if_empty:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        raise RequestValidationError(errors, body=raw) from None
