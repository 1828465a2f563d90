"""Triton's binary tensor data extension on the v2 REST route: framing of bodies in and out, and its docs.

A framed body starts with a JSON inference header of `Inference-Header-Content-Length` bytes; the
rest is the raw buffers (service.v2.raw layout) of the tensors whose parameters carry
`binary_data_size`, concatenated in the order of those tensors. A response is framed the same way
(and labelled application/octet-stream) when the request asked for at least one binary output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Header
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, WithJsonSchema

from service.errors import InvalidInput

BINARY_HEADER = "Inference-Header-Content-Length"
BINARY_MEDIA_TYPE = "application/octet-stream"
_BINARY_SCHEMA: dict[str, Any] = {"type": "string", "format": "binary"}

# The route's header parameter: absent for a plain JSON body.
HeaderLength = Annotated[
    int | None,
    Header(
        alias=BINARY_HEADER,
        ge=0,
        description="Binary extension: the body's first N bytes are the JSON request, raw input tensors follow",
    ),
    WithJsonSchema({"type": "integer", "minimum": 0}),  # absent or a number, never "null"
]


@dataclass(frozen=True)
class FramedBody:
    header: bytes  # the JSON inference request
    binary: bytes | None  # the raw tensor bytes after it; None when the body is not framed


def split_body(body: bytes, header_length: int | None) -> FramedBody:
    if header_length is None:
        return FramedBody(body, None)
    if not 0 <= header_length <= len(body):
        raise InvalidInput(f"{BINARY_HEADER} is {header_length} but the body has only {len(body)} bytes")
    return FramedBody(body[:header_length], body[header_length:])


def split_buffers(binary: bytes, sizes: Sequence[int]) -> list[bytes]:
    """Cut the bytes after the JSON header into one buffer per binary tensor; they must add up exactly."""
    total = sum(sizes)
    if total != len(binary):
        raise InvalidInput(
            f"the inputs' binary_data_size add up to {total} bytes but {len(binary)} bytes follow the JSON header"
        )
    buffers, offset = [], 0
    for size in sizes:
        buffers.append(binary[offset : offset + size])
        offset += size
    return buffers


def framed_response(body: BaseModel, buffers: Sequence[bytes] | None) -> Response:
    """JSON when no output is binary (buffers None), else the JSON header followed by the raw buffers."""
    json_response = JSONResponse(body.model_dump(mode="json", exclude_none=True))
    if buffers is None:
        return json_response
    header = bytes(json_response.body)
    return Response(header + b"".join(buffers), media_type=BINARY_MEDIA_TYPE, headers={BINARY_HEADER: str(len(header))})


# ---- OpenAPI: the JSON body stays documented as it is; the framed body is its alternative ---------


def _inline_refs(schema: Any, defs: dict[str, Any]) -> Any:
    """pydantic's local `#/$defs/X` references replaced by their schemas (the models are not recursive)."""
    if isinstance(schema, list):
        return [_inline_refs(item, defs) for item in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
    return {key: _inline_refs(value, defs) for key, value in schema.items() if key != "$defs"}


def request_body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its body itself: JSON, or JSON header + raw tensors."""
    schema = model.model_json_schema()
    return {
        "requestBody": {
            "required": True,
            "description": (
                f"The JSON inference request; or, with the {BINARY_HEADER} header (binary tensor data extension), "
                "that many bytes of JSON request followed by the raw bytes of the inputs that carry "
                "`parameters.binary_data_size`, in input order (BYTES elements: 4-byte little-endian length + "
                "bytes; numbers: little-endian)."
            ),
            "content": {
                "application/json": {"schema": _inline_refs(schema, schema.get("$defs", {}))},
                BINARY_MEDIA_TYPE: {"schema": _BINARY_SCHEMA},
            },
        }
    }


def response_doc(headers: dict[str, Any]) -> dict[str, Any]:
    """The 200 response's binary alternative and its header, next to the JSON model."""
    header = {
        "description": "Binary responses only: length of the JSON header that precedes the raw output bytes",
        "schema": {"type": "string"},
    }
    return {"headers": {**headers, BINARY_HEADER: header}, "content": {BINARY_MEDIA_TYPE: {"schema": _BINARY_SCHEMA}}}
