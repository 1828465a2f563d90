"""KServe v2 REST (Open Inference Protocol): health, server and model metadata, readiness, infer."""

# No `from __future__ import annotations`: FastAPI must evaluate the closures' local `Deadline` alias.

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse, Response

import service
from service.api import binary_v2
from service.api import converters_v2 as conv
from service.api.binary_v2 import HeaderLength
from service.api.body import parse_body
from service.api.calls import deadline_dependency, inference_call, record_timings
from service.api.errors import INFERENCE_ERRORS, READ_ERRORS, documented_errors
from service.api.middleware import TIMING_HEADERS
from service.api.schemas_v2 import (
    InferRequestBody,
    InferResponseBody,
    ModelListBody,
    ModelMetadataBody,
    ModelReadyBody,
    ServerLiveBody,
    ServerMetadataBody,
    ServerReadyBody,
)
from service.dataplane import DataPlane
from service.errors import ERROR_TABLE, NotReady
from service.v2 import codec
from service.v2.types import EXTENSIONS, MODEL_VERSION, SERVER_NAME

NOT_READY_STATUS = ERROR_TABLE[NotReady.kind].http
MODEL = "/v2/models/{name}"
VERSIONED = "/v2/models/{name}/versions/{version}"
# Every model has one version; any other names no model (404, from the DataPlane).
Version = Annotated[str, Path(examples=[MODEL_VERSION])]


def _not_ready_doc(model: type) -> dict[int | str, dict[str, Any]]:
    return {NOT_READY_STATUS: {"model": model, "description": "Not ready"}}


def build_v2_router(plane: DataPlane) -> APIRouter:
    router = APIRouter(tags=["v2"])
    _add_server_routes(router, plane)
    _add_model_routes(router, plane)
    _add_infer_routes(router, plane)
    return router


def _add_server_routes(router: APIRouter, plane: DataPlane) -> None:
    errors = documented_errors(*READ_ERRORS, v2=True)

    @router.get("/v2/health/live", summary="Server liveness", responses=errors)
    async def server_live() -> ServerLiveBody:
        return ServerLiveBody(live=plane.live)

    @router.get(
        "/v2/health/ready",
        summary="Server readiness (503 when not ready)",
        response_model=ServerReadyBody,
        responses={**errors, **_not_ready_doc(ServerReadyBody)},
    )
    async def server_ready() -> JSONResponse:
        ready = plane.ready
        return JSONResponse({"ready": ready}, status_code=200 if ready else NOT_READY_STATUS)

    @router.get("/v2", summary="Server metadata", responses=errors)
    async def server_metadata() -> ServerMetadataBody:
        return ServerMetadataBody(name=SERVER_NAME, version=service.__version__, extensions=list(EXTENSIONS))

    @router.get("/v2/models", summary="Names of the served models", responses=errors)
    async def model_list() -> ModelListBody:
        return ModelListBody(models=[s.name for s in plane.models()])


def _add_model_routes(router: APIRouter, plane: DataPlane) -> None:
    errors = documented_errors(*READ_ERRORS, v2=True)
    ready_doc: dict[str, Any] = {
        "summary": "Model readiness (503 when not ready)",
        "response_model": ModelReadyBody,
        "responses": {**errors, **_not_ready_doc(ModelReadyBody)},
    }

    def metadata(name: str, version: str) -> ModelMetadataBody:
        return conv.model_metadata(codec.model_metadata(plane.model_metadata(name, version)))

    def readiness(name: str, version: str) -> JSONResponse:
        ready = plane.model_ready(name, version)  # loading, failed or draining: false; unknown: 404
        return JSONResponse({"name": name, "ready": ready}, status_code=200 if ready else NOT_READY_STATUS)

    @router.get(MODEL, summary="Model metadata", responses=errors)
    async def model_metadata(name: str) -> ModelMetadataBody:
        return metadata(name, "")

    @router.get(VERSIONED, summary="Model metadata (one version)", responses=errors)
    async def model_version_metadata(name: str, version: Version) -> ModelMetadataBody:
        return metadata(name, version)

    @router.get(MODEL + "/ready", **ready_doc)
    async def model_ready(name: str) -> JSONResponse:
        return readiness(name, "")

    @router.get(VERSIONED + "/ready", **ready_doc)
    async def model_version_ready(name: str, version: Version) -> JSONResponse:
        return readiness(name, version)


def _add_infer_routes(router: APIRouter, plane: DataPlane) -> None:
    Deadline = Annotated[float, Depends(deadline_dependency(plane))]
    doc: dict[str, Any] = {
        "summary": "Run inference (JSON tensors, or Triton's binary tensor data extension)",
        "response_model": InferResponseBody,
        "responses": {
            **documented_errors(*INFERENCE_ERRORS, v2=True),
            200: binary_v2.response_doc(TIMING_HEADERS),
        },
        # The route reads the body itself (a framed body is not JSON), so the body is documented here.
        "openapi_extra": binary_v2.request_body_doc(InferRequestBody),
    }

    async def run(name: str, version: str, header_length: int | None, request: Request, deadline: float) -> Response:
        framed = binary_v2.split_body(await request.body(), header_length)
        body = parse_body(InferRequestBody, framed.header, missing_if_empty=framed.binary is None)
        with inference_call(plane, request, None, name, version) as call:  # the model decides the task
            encoding = conv.output_encoding(body)
            infer_request = conv.infer_request(body, framed.binary)
            response, result = await codec.infer(call, infer_request, deadline)
        record_timings(request, result.timings)
        return binary_v2.framed_response(*conv.infer_response(response, encoding))

    @router.post(MODEL + "/infer", **doc)
    async def model_infer(
        name: str, request: Request, deadline: Deadline, header_length: HeaderLength = None
    ) -> Response:
        return await run(name, "", header_length, request, deadline)

    @router.post(VERSIONED + "/infer", **doc)
    async def model_version_infer(
        name: str, version: Version, request: Request, deadline: Deadline, header_length: HeaderLength = None
    ) -> Response:
        return await run(name, version, header_length, request, deadline)
