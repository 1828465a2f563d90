"""RequestIntake: what happens to a gRPC request before its servicer sees it (a server interceptor).

- Early admission: a squeezeserve.v1 task RPC whose every model has a full queue is refused
  (RESOURCE_EXHAUSTED + retry metadata) before its payload is even decoded, like REST's middleware.
- Decoding: a payload that is not the RPC's message (corrupt bytes, invalid UTF-8 in a string
  field) is INVALID_ARGUMENT with a plain message, counted like any refused request; grpcio would
  answer UNKNOWN with an internal exception class name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from service.dataplane import DataPlane
from service.errors import InvalidInput, ServiceError
from service.grpc.calls import TRANSPORT
from service.grpc.errors import abort_with

V1_TASK_METHODS = {
    "/squeezeserve.v1.Inference/Classify": "sequence-classification",
    "/squeezeserve.v1.Inference/TokenClassify": "token-classification",
    "/squeezeserve.v1.Inference/Answer": "question-answering",
}
KSERVE_INFER = "/inference.GRPCInferenceService/ModelInfer"
GUARDED_PREFIXES = ("/squeezeserve.v1.Inference/", "/inference.GRPCInferenceService/")


@dataclass(frozen=True)
class _Refused:
    """What the deserializer hands the servicer instead of a message: the error to answer with."""

    error: ServiceError
    count_as: str | None  # the outcome to count, None when counted already (or not an inference RPC)


class RequestIntake(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc.aio is untyped here
    def __init__(self, plane: DataPlane) -> None:
        self._plane = plane

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or handler.unary_unary is None or not method.startswith(GUARDED_PREFIXES):
            return handler
        task = V1_TASK_METHODS.get(method)
        inference = task is not None or method == KSERVE_INFER  # inference RPCs are counted; reads are not
        decode = handler.request_deserializer
        behavior = handler.unary_unary
        plane = self._plane

        def deserialize(data: bytes) -> Any:
            if task is not None:
                refusal = plane.early_refusal(TRANSPORT, task, None)
                if refusal is not None:
                    return _Refused(refusal, count_as=None)  # counted by early_refusal
            try:
                return decode(data)
            except Exception:  # protobuf's DecodeError, and whatever else a corrupt payload raises
                error = InvalidInput("the request payload is not a valid protobuf message for this RPC")
                return _Refused(error, count_as="invalid" if inference else None)

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, _Refused):
                if request.count_as is not None:
                    plane.record_refusal(TRANSPORT, task, None, request.count_as, 0.0)
                await abort_with(context, request.error)
            return await behavior(request, context)

        return handler._replace(request_deserializer=deserialize, unary_unary=guarded)
