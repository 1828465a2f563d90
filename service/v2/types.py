"""KServe v2 / Open Inference Protocol values, independent of JSON and protobuf."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ParamValue = bool | int | float | str
TensorData = list[Any]  # flat, row-major; BYTES elements are str (decoded) on input and output

PLATFORM = "onnxruntime_onnx"
MODEL_VERSION = "1"
SERVER_NAME = "squeezeserve"
# Extensions we implement beyond the core (advertised in server metadata).
EXTENSIONS: tuple[str, ...] = ("model_repository_list", "binary_tensor_data")


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: TensorData


@dataclass(frozen=True)
class TensorMetadata:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1 for variable dimensions


@dataclass(frozen=True)
class InferRequest:
    inputs: list[Tensor]
    parameters: dict[str, ParamValue] = field(default_factory=dict)
    outputs: list[str] | None = None  # requested output names; None: all
    id: str = ""


@dataclass(frozen=True)
class InferResponse:
    model_name: str
    model_version: str
    id: str
    outputs: list[Tensor]


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    properties: dict[str, str]
