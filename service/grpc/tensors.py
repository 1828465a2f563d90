"""KServe v2 gRPC messages <-> service.v2 values, in named pairs.

Raw contents (`raw_input_contents` / `raw_output_contents`) hold one buffer per tensor, in the
order of the tensors, in the layout of service.v2.raw (shared with the REST binary extension).
Responses always use raw contents: tritonclient reads gRPC outputs only from there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from service.errors import InvalidInput
from service.grpc.generated.inference import grpc_service_pb2 as pb
from service.v2 import raw
from service.v2.raw import bytes_elements_from_raw as bytes_elements_from_raw  # re-exported for callers
from service.v2.raw import bytes_elements_to_raw as bytes_elements_to_raw
from service.v2.types import InferRequest, InferResponse, ModelMetadata, ParamValue, Tensor, TensorMetadata

# datatype -> InferTensorContents field; a datatype missing here (FP16) travels only as raw contents.
_CONTENTS_FIELDS: dict[str, str] = {
    "BYTES": "bytes_contents",
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}


# ---- tensors ----------------------------------------------------------------------------------


def _data_from_contents(datatype: str, contents: pb.InferTensorContents, what: str) -> list[Any]:
    field = _CONTENTS_FIELDS.get(datatype)
    if field is None:
        raise InvalidInput(f"{what}: {datatype} data can only be sent as raw_input_contents")
    return list(getattr(contents, field))


def _input_tensor_from_pb(tensor: pb.ModelInferRequest.InferInputTensor, buffer: bytes | None) -> Tensor:
    what = f"input {tensor.name!r}"
    raw.check_datatype(tensor.datatype, what)
    if buffer is None:
        data = _data_from_contents(tensor.datatype, tensor.contents, what)
    elif tensor.contents.ListFields():
        raise InvalidInput(f"{what}: contents must be empty when raw_input_contents is used")
    else:
        data = raw.data_from_raw(tensor.datatype, buffer, what)
    raw.check_element_count(tensor.shape, len(data), what)
    return Tensor(tensor.name, tensor.datatype, tuple(tensor.shape), data)


def input_tensors_from_pb(request: pb.ModelInferRequest) -> list[Tensor]:
    """Inputs from `contents`, or (all of them) from `raw_input_contents` in `inputs` order."""
    buffers = request.raw_input_contents
    if not buffers:
        return [_input_tensor_from_pb(tensor, None) for tensor in request.inputs]
    if len(buffers) != len(request.inputs):
        raise InvalidInput(f"raw_input_contents has {len(buffers)} buffers for {len(request.inputs)} inputs")
    return [_input_tensor_from_pb(tensor, buffer) for tensor, buffer in zip(request.inputs, buffers)]


def _raw_from_data(tensor: Tensor) -> bytes:
    return raw.data_to_raw(tensor.datatype, tensor.data)


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
        data = raw.data_from_raw(tensor.datatype, buffer, f"output {tensor.name!r}")
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
