"""inference.GRPCInferenceService: KServe v2 / Open Inference Protocol over gRPC (Triton-compatible)."""

from __future__ import annotations

from typing import TypeAlias

import grpc

from service import __version__
from service.dataplane import DataPlane
from service.grpc import tensors
from service.grpc.calls import inference_call, request_deadline, send_timings
from service.grpc.errors import mapped_errors
from service.grpc.generated.inference import grpc_service_pb2 as pb
from service.grpc.generated.inference import grpc_service_pb2_grpc as pb_grpc
from service.v2 import codec
from service.v2.types import EXTENSIONS, SERVER_NAME

Context: TypeAlias = grpc.aio.ServicerContext


class KServeServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, plane: DataPlane) -> None:
        self._plane = plane

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self._plane.live)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._plane.ready)

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Context) -> pb.ModelReadyResponse:
        """Unknown model or version: NOT_FOUND (like Triton); loading, failed or draining: ready=false."""
        async with mapped_errors(context):
            return pb.ModelReadyResponse(ready=self._plane.model_ready(request.name, request.version))

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Context) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=list(EXTENSIONS))

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Context) -> pb.ModelMetadataResponse:
        async with mapped_errors(context):
            metadata = codec.model_metadata(self._plane.model_metadata(request.name, request.version))
            return tensors.model_metadata_to_pb(metadata)

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Context) -> pb.ModelInferResponse:
        async with inference_call(self._plane, context, None, request.model_name, request.model_version) as call:
            infer_request = tensors.infer_request_from_pb(request)
            response, result = await codec.infer(call, infer_request, request_deadline(self._plane, context))
            send_timings(context, result.timings)
            return tensors.infer_response_to_pb(response)
