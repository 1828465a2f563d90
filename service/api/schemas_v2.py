"""Pydantic models of the KServe v2 (Open Inference Protocol) REST API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr
from pydantic.json_schema import SkipJsonSchema

from service.api.body import JsonBody

ParamValue = StrictBool | StrictInt | StrictFloat | StrictStr


class TensorInput(BaseModel):
    # Clients add their own keys (OIP allows extensions); unknown ones are ignored, not refused.
    model_config = ConfigDict(extra="ignore", strict=True)
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, ParamValue] | None = Field(
        None, description="`binary_data_size`: this input's raw bytes follow the JSON header (binary extension)"
    )
    # Absent for binary inputs; the schema shows it as an array (null is never useful).
    data: list[Any] | SkipJsonSchema[None] = Field(
        None, description="Row-major, nested or flat; BYTES elements are strings. Required unless binary"
    )


class RequestedOutput(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    name: str
    parameters: dict[str, ParamValue] | None = Field(
        None, description="`binary_data`: send this output as raw bytes after the JSON header (binary extension)"
    )


class InferRequestBody(JsonBody):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "id": "42",
                    "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["I loved it"]}],
                    "parameters": {"top_k": 2},
                }
            ]
        },
    )
    id: str | None = None
    parameters: dict[str, ParamValue] | None = Field(
        None,
        description="Task parameters, by the pipelines' names; `binary_data_output`: every output as raw bytes",
    )
    inputs: list[TensorInput]
    outputs: list[RequestedOutput] | None = None


class TensorOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    # Binary outputs carry `parameters.binary_data_size` instead of `data` (both omitted when unset).
    parameters: dict[str, ParamValue] | SkipJsonSchema[None] = None
    data: list[Any] | SkipJsonSchema[None] = None


class InferResponseBody(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model_name": "sequence-classification",
                    "model_version": "1",
                    "id": "42",
                    "outputs": [
                        {"name": "label", "datatype": "BYTES", "shape": [1, 1], "data": ["POSITIVE"]},
                        {"name": "score", "datatype": "FP32", "shape": [1, 1], "data": [0.98]},
                    ],
                }
            ]
        }
    )
    model_name: str
    model_version: str
    id: str
    outputs: list[TensorOutput]


class TensorMetadataBody(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 marks a variable dimension")


class ModelMetadataBody(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "sequence-classification",
                    "versions": ["1"],
                    "platform": "onnxruntime_onnx",
                    "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
                    "outputs": [{"name": "label", "datatype": "BYTES", "shape": [-1, -1]}],
                    "properties": {"task": "sequence-classification", "precision": "int8"},
                }
            ]
        }
    )
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadataBody]
    outputs: list[TensorMetadataBody]
    properties: dict[str, str]


class ServerMetadataBody(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "squeezeserve", "version": "0.1.0", "extensions": []}]}
    )
    name: str
    version: str
    extensions: list[str]


class ServerLiveBody(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"live": True}]})
    live: bool


class ServerReadyBody(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"ready": True}, {"ready": False}]})
    ready: bool


class ModelReadyBody(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "sequence-classification", "ready": True}]})
    name: str
    ready: bool


class ModelListBody(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"models": ["sequence-classification"]}]})
    models: list[str]
