"""inference.GRPCInferenceService: KServe v2 / Open Inference Protocol over gRPC (Triton-compatible)."""

from __future__ import annotations

from typing import TypeAlias

import grpc

from service import __version__
from service.core import Core
from service.errors import NotReady
from service.grpc import tensors
from service.grpc.calls import inference_call, request_deadline, send_timings
from service.grpc.errors import mapped_errors
from service.grpc.generated.inference import grpc_service_pb2 as pb
from service.grpc.generated.inference import grpc_service_pb2_grpc as pb_grpc
from service.v2 import codec
from service.v2.types import EXTENSIONS, SERVER_NAME

Context: TypeAlias = grpc.aio.ServicerContext


class KServeServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, core: Core) -> None:
        self._core = core

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self._core.state.live)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._core.state.ready)

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Context) -> pb.ModelReadyResponse:
        """Unknown model: NOT_FOUND (like Triton); known but loading or draining: ready=false."""
        async with mapped_errors(context):
            codec.check_version(request.version)
            try:
                self._core.registry.get(request.name)
            except NotReady:
                return pb.ModelReadyResponse(ready=False)
            return pb.ModelReadyResponse(ready=not self._core.state.draining)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Context) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=list(EXTENSIONS))

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Context) -> pb.ModelMetadataResponse:
        async with mapped_errors(context):
            codec.check_version(request.version)
            metadata = codec.model_metadata(self._core.registry.get(request.name))
            return tensors.model_metadata_to_pb(metadata)

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Context) -> pb.ModelInferResponse:
        async with inference_call(self._core, context, "unknown") as labels:
            handle = self._core.registry.get(request.model_name)
            labels.task, labels.model = handle.task, handle.name
            infer_request = tensors.infer_request_from_pb(request)
            deadline = request_deadline(self._core, context)
            response, result = await codec.infer(
                self._core.service, request.model_name, request.model_version, infer_request, deadline
            )
            send_timings(context, result.timings)
            return tensors.infer_response_to_pb(response)
