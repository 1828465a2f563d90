"""KServe v2 gRPC messages <-> service.v2 values, in named pairs, including the raw tensor wire format.

Raw contents (`raw_input_contents` / `raw_output_contents`): one buffer per tensor, in the order
of the tensors; BYTES elements are a 4-byte little-endian length followed by the bytes, numeric
tensors are little-endian and row-major. Responses always use raw contents: tritonclient reads
gRPC outputs only from there.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from service.errors import InvalidInput
from service.grpc.generated.inference import grpc_service_pb2 as pb
from service.v2.types import InferRequest, InferResponse, ModelMetadata, ParamValue, Tensor, TensorMetadata

_LENGTH = struct.Struct("<I")
# datatype -> (InferTensorContents field, little-endian numpy dtype); BYTES is handled apart.
_NUMERIC: dict[str, tuple[str | None, str]] = {
    "BOOL": ("bool_contents", "?"),
    "UINT8": ("uint_contents", "<u1"),
    "UINT16": ("uint_contents", "<u2"),
    "UINT32": ("uint_contents", "<u4"),
    "UINT64": ("uint64_contents", "<u8"),
    "INT8": ("int_contents", "<i1"),
    "INT16": ("int_contents", "<i2"),
    "INT32": ("int_contents", "<i4"),
    "INT64": ("int64_contents", "<i8"),
    "FP16": (None, "<f2"),  # raw only
    "FP32": ("fp32_contents", "<f4"),
    "FP64": ("fp64_contents", "<f8"),
}


# ---- BYTES elements ---------------------------------------------------------------------------


def bytes_elements_from_raw(buffer: bytes, what: str) -> list[bytes]:
    """Split a raw BYTES buffer into its length-prefixed elements."""
    elements: list[bytes] = []
    offset = 0
    while offset < len(buffer):  # each pass consumes at least the 4-byte prefix
        if offset + _LENGTH.size > len(buffer):
            raise InvalidInput(f"{what}: raw BYTES buffer ends inside an element's length prefix")
        (size,) = _LENGTH.unpack_from(buffer, offset)
        offset += _LENGTH.size
        if offset + size > len(buffer):
            raise InvalidInput(f"{what}: raw BYTES element of {size} bytes overruns the buffer")
        elements.append(bytes(buffer[offset : offset + size]))
        offset += size
    return elements


def bytes_elements_to_raw(elements: Iterable[str | bytes]) -> bytes:
    parts = []
    for element in elements:
        data = element.encode("utf-8") if isinstance(element, str) else bytes(element)
        parts.append(_LENGTH.pack(len(data)) + data)
    return b"".join(parts)


# ---- tensors ----------------------------------------------------------------------------------


def _data_from_raw(datatype: str, buffer: bytes, what: str) -> list[Any]:
    if datatype == "BYTES":
        return list(bytes_elements_from_raw(buffer, what))
    dtype = np.dtype(_NUMERIC[datatype][1])
    if len(buffer) % dtype.itemsize:
        raise InvalidInput(f"{what}: raw buffer of {len(buffer)} bytes is not a whole number of {datatype}")
    return list(np.frombuffer(buffer, dtype=dtype).tolist())


def _data_from_contents(datatype: str, contents: pb.InferTensorContents, what: str) -> list[Any]:
    field = "bytes_contents" if datatype == "BYTES" else _NUMERIC[datatype][0]
    if field is None:
        raise InvalidInput(f"{what}: {datatype} data can only be sent as raw_input_contents")
    return list(getattr(contents, field))


def _input_tensor_from_pb(tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None) -> Tensor:
    what = f"input {tensor.name!r}"
    if tensor.datatype != "BYTES" and tensor.datatype not in _NUMERIC:
        raise InvalidInput(f"{what}: unknown datatype {tensor.datatype!r}")
    if raw is None:
        data = _data_from_contents(tensor.datatype, tensor.contents, what)
    elif tensor.contents.ListFields():
        raise InvalidInput(f"{what}: contents must be empty when raw_input_contents is used")
    else:
        data = _data_from_raw(tensor.datatype, raw, what)
    expected = math.prod(tensor.shape)
    if len(data) != expected:
        raise InvalidInput(f"{what}: shape {list(tensor.shape)} needs {expected} elements, got {len(data)}")
    return Tensor(tensor.name, tensor.datatype, tuple(tensor.shape), data)


def input_tensors_from_pb(request: pb.ModelInferRequest) -> list[Tensor]:
    """Inputs from `contents`, or (all of them) from `raw_input_contents` in `inputs` order."""
    raw = request.raw_input_contents
    if not raw:
        return [_input_tensor_from_pb(tensor, None) for tensor in request.inputs]
    if len(raw) != len(request.inputs):
        raise InvalidInput(f"raw_input_contents has {len(raw)} buffers for {len(request.inputs)} inputs")
    return [_input_tensor_from_pb(tensor, buffer) for tensor, buffer in zip(request.inputs, raw)]


def _raw_from_data(tensor: Tensor) -> bytes:
    if tensor.datatype == "BYTES":
        return bytes_elements_to_raw(tensor.data)
    return np.asarray(tensor.data, dtype=_NUMERIC[tensor.datatype][1]).tobytes()


OutputHeaders = list[pb.ModelInferResponse.InferOutputTensor]


def output_tensors_to_pb(tensors: Sequence[Tensor]) -> tuple[OutputHeaders, list[bytes]]:
    """Output tensor headers and, in the same order, their raw buffers."""
    headers = [
        pb.ModelInferResponse.InferOutputTensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in tensors
    ]
    return headers, [_raw_from_data(t) for t in tensors]


def output_tensors_from_pb(response: pb.ModelInferResponse) -> list[Tensor]:
    """Decode raw outputs (BYTES elements as str), e.g. for clients and tests."""
    if len(response.raw_output_contents) != len(response.outputs):
        raise InvalidInput("raw_output_contents does not match outputs")
    tensors = []
    for tensor, buffer in zip(response.outputs, response.raw_output_contents):
        data = _data_from_raw(tensor.datatype, buffer, f"output {tensor.name!r}")
        if tensor.datatype == "BYTES":
            data = [item.decode("utf-8") for item in data]
        tensors.append(Tensor(tensor.name, tensor.datatype, tuple(tensor.shape), data))
    return tensors


# ---- parameters -------------------------------------------------------------------------------


def parameters_from_pb(parameters: Mapping[str, pb.InferParameter]) -> dict[str, ParamValue]:
    values: dict[str, ParamValue] = {}
    for name, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        if choice is None:
            raise InvalidInput(f"parameter {name!r} has no value")
        values[name] = getattr(parameter, choice)
    return values


def parameters_to_pb(values: Mapping[str, ParamValue]) -> dict[str, pb.InferParameter]:
    params = {}
    for name, value in values.items():
        if isinstance(value, bool):
            params[name] = pb.InferParameter(bool_param=value)
        elif isinstance(value, int):
            params[name] = pb.InferParameter(int64_param=value)
        elif isinstance(value, float):
            params[name] = pb.InferParameter(double_param=value)
        else:
            params[name] = pb.InferParameter(string_param=value)
    return params


# ---- requests and responses -------------------------------------------------------------------


def infer_request_from_pb(request: pb.ModelInferRequest) -> InferRequest:
    return InferRequest(
        inputs=input_tensors_from_pb(request),
        parameters=parameters_from_pb(request.parameters),
        outputs=[o.name for o in request.outputs] or None,
        id=request.id,
    )


def infer_request_to_pb(model: str, version: str, request: InferRequest) -> pb.ModelInferRequest:
    """BYTES inputs as raw contents (the fast path clients use)."""
    inputs = [
        pb.ModelInferRequest.InferInputTensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in request.inputs
    ]
    return pb.ModelInferRequest(
        model_name=model,
        model_version=version,
        id=request.id,
        parameters=parameters_to_pb(request.parameters),
        inputs=inputs,
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name=n) for n in request.outputs or []],
        raw_input_contents=[_raw_from_data(t) for t in request.inputs],
    )


def infer_response_from_pb(response: pb.ModelInferResponse) -> InferResponse:
    return InferResponse(response.model_name, response.model_version, response.id, output_tensors_from_pb(response))


def infer_response_to_pb(response: InferResponse) -> pb.ModelInferResponse:
    headers, raw = output_tensors_to_pb(response.outputs)
    return pb.ModelInferResponse(
        model_name=response.model_name,
        model_version=response.model_version,
        id=response.id,
        outputs=headers,
        raw_output_contents=raw,
    )


# ---- metadata ---------------------------------------------------------------------------------


def _tensor_metadata_to_pb(items: Iterable[TensorMetadata]) -> list[pb.ModelMetadataResponse.TensorMetadata]:
    return [pb.ModelMetadataResponse.TensorMetadata(name=m.name, datatype=m.datatype, shape=m.shape) for m in items]


def _tensor_metadata_from_pb(items: Iterable[pb.ModelMetadataResponse.TensorMetadata]) -> list[TensorMetadata]:
    return [TensorMetadata(m.name, m.datatype, tuple(m.shape)) for m in items]


def model_metadata_to_pb(metadata: ModelMetadata) -> pb.ModelMetadataResponse:
    return pb.ModelMetadataResponse(
        name=metadata.name,
        versions=metadata.versions,
        platform=metadata.platform,
        inputs=_tensor_metadata_to_pb(metadata.inputs),
        outputs=_tensor_metadata_to_pb(metadata.outputs),
        properties=metadata.properties,
    )


def model_metadata_from_pb(response: pb.ModelMetadataResponse) -> ModelMetadata:
    return ModelMetadata(
        name=response.name,
        versions=list(response.versions),
        platform=response.platform,
        inputs=_tensor_metadata_from_pb(response.inputs),
        outputs=_tensor_metadata_from_pb(response.outputs),
        properties=dict(response.properties),
    )
