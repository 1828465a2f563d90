"""KServe v2 converters in pairs: JSON request (+ binary buffers) -> InferRequest; InferResponse -> JSON (+ buffers).

The binary tensor data extension's parameters: an input's `binary_data_size` says its data is that
many raw bytes after the JSON header; a requested output's `binary_data` (or, for every output
without its own, the request's `binary_data_output`) asks for the output the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.api.binary_v2 import BINARY_HEADER, split_buffers
from service.api.schemas_v2 import (
    InferRequestBody,
    InferResponseBody,
    ModelMetadataBody,
    TensorInput,
    TensorMetadataBody,
    TensorOutput,
)
from service.errors import InvalidInput
from service.v2 import raw
from service.v2.types import InferRequest, InferResponse, ModelMetadata, ParamValue, Tensor

BINARY_SIZE = "binary_data_size"
BINARY_DATA = "binary_data"
BINARY_DATA_OUTPUT = "binary_data_output"


@dataclass(frozen=True)
class OutputEncoding:
    """Which outputs go back as raw bytes: by requested output, else the request's default."""

    default: bool = False
    by_name: dict[str, bool] = field(default_factory=dict)

    def is_binary(self, name: str) -> bool:
        return self.by_name.get(name, self.default)


def flatten(data: list[Any]) -> list[Any]:
    """Row-major flat list of nested `data` (the protocol allows both); iterative, so depth is free."""
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _flag(parameters: dict[str, ParamValue] | None, name: str, what: str) -> bool | None:
    value = (parameters or {}).get(name)
    if value is not None and not isinstance(value, bool):
        raise InvalidInput(f"{what}: parameter {name!r} must be a boolean, got {value!r}")
    return value


def binary_size(tensor: TensorInput) -> int | None:
    value = (tensor.parameters or {}).get(BINARY_SIZE)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise InvalidInput(f"input {tensor.name!r}: {BINARY_SIZE} must be a non-negative integer, got {value!r}")
    return value


def input_buffers(inputs: list[TensorInput], binary: bytes | None) -> list[bytes | None]:
    """Each input's raw buffer (None for JSON `data`), cut from the bytes after the JSON header."""
    sizes = [binary_size(t) for t in inputs]
    if binary is None:
        framed = [t.name for t, size in zip(inputs, sizes) if size is not None]
        if framed:
            raise InvalidInput(f"input {framed[0]!r} has {BINARY_SIZE} but the request has no {BINARY_HEADER} header")
        return [None] * len(inputs)
    buffers = iter(split_buffers(binary, [size for size in sizes if size is not None]))
    return [None if size is None else next(buffers) for size in sizes]


def tensor_in(tensor: TensorInput, buffer: bytes | None = None) -> Tensor:
    what = f"input {tensor.name!r}"
    if buffer is None:
        if tensor.data is None:
            raise InvalidInput(f"{what} has no data: send `data` or the binary extension's {BINARY_SIZE}")
        return Tensor(tensor.name, tensor.datatype, tuple(tensor.shape), flatten(tensor.data))
    if tensor.data is not None:
        raise InvalidInput(f"{what} has both `data` and {BINARY_SIZE}; send one")
    data = raw.data_from_raw(tensor.datatype, buffer, what)
    raw.check_element_count(tensor.shape, len(data), what)
    return Tensor(tensor.name, tensor.datatype, tuple(tensor.shape), data)


def tensor_out(tensor: Tensor, binary: bool) -> tuple[TensorOutput, bytes | None]:
    """The JSON tensor and, for a binary output, its raw buffer (the JSON then has no `data`)."""
    if not binary:
        return TensorOutput(
            name=tensor.name, datatype=tensor.datatype, shape=list(tensor.shape), data=list(tensor.data)
        ), None
    buffer = raw.data_to_raw(tensor.datatype, tensor.data)
    parameters: dict[str, ParamValue] = {BINARY_SIZE: len(buffer)}
    return TensorOutput(
        name=tensor.name, datatype=tensor.datatype, shape=list(tensor.shape), parameters=parameters
    ), buffer


def output_encoding(body: InferRequestBody) -> OutputEncoding:
    default = _flag(body.parameters, BINARY_DATA_OUTPUT, "request")
    by_name = {}
    for output in body.outputs or []:
        flag = _flag(output.parameters, BINARY_DATA, f"output {output.name!r}")
        if flag is not None:
            by_name[output.name] = flag
    return OutputEncoding(bool(default), by_name)


def infer_request(body: InferRequestBody, binary: bytes | None = None) -> InferRequest:
    """`binary` is what follows the JSON header of a framed body (None: a plain JSON body)."""
    parameters = {k: v for k, v in (body.parameters or {}).items() if k != BINARY_DATA_OUTPUT}
    return InferRequest(
        inputs=[tensor_in(t, b) for t, b in zip(body.inputs, input_buffers(body.inputs, binary))],
        parameters=parameters,
        outputs=None if body.outputs is None else [o.name for o in body.outputs],
        id=body.id or "",
    )


def infer_response(
    response: InferResponse, encoding: OutputEncoding | None = None
) -> tuple[InferResponseBody, list[bytes] | None]:
    """The JSON response and the binary outputs' buffers in output order (None when no output is binary)."""
    encoding = encoding or OutputEncoding()
    converted = [tensor_out(t, encoding.is_binary(t.name)) for t in response.outputs]
    buffers = [buffer for _, buffer in converted if buffer is not None]
    body = InferResponseBody(
        model_name=response.model_name,
        model_version=response.model_version,
        id=response.id,
        outputs=[tensor for tensor, _ in converted],
    )
    return body, buffers if any(encoding.is_binary(t.name) for t in response.outputs) else None


def model_metadata(meta: ModelMetadata) -> ModelMetadataBody:
    def tensors(items: Any) -> list[TensorMetadataBody]:
        return [TensorMetadataBody(name=t.name, datatype=t.datatype, shape=list(t.shape)) for t in items]

    return ModelMetadataBody(
        name=meta.name,
        versions=list(meta.versions),
        platform=meta.platform,
        inputs=tensors(meta.inputs),
        outputs=tensors(meta.outputs),
        properties=dict(meta.properties),
    )
