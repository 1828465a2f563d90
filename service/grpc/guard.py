"""AuthInterceptor: API keys on every gRPC method outside the exempt families (UNAUTHENTICATED otherwise).

The key comes as `authorization: Bearer <key>` metadata, on both services (squeezeserve.v1 and
inference.GRPCInferenceService). Exempt families: "health" is grpc.health.v1 and KServe's
ServerLive/ServerReady (what probes call); "docs" is server reflection (the API description,
as /openapi.json is on REST). The metadata value is never logged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from service.metrics import Metrics
from service.security import ApiKeys

TRANSPORT = "grpc"
KSERVE = "/inference.GRPCInferenceService/"
EXEMPT_METHODS = {
    "health": ("/grpc.health.v1.Health/", KSERVE + "ServerLive", KSERVE + "ServerReady"),
    "metrics": (),
    "docs": ("/grpc.reflection.v1alpha.ServerReflection/", "/grpc.reflection.v1.ServerReflection/"),
}
MISSING = "an API key is required: authorization: Bearer <key> metadata"
INVALID = "the API key is not valid"


def _refusal(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that only aborts with UNAUTHENTICATED."""

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover - makes this an async generator

    serializers = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary, **serializers)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming, **serializers)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary, **serializers)
    return grpc.stream_stream_rpc_method_handler(streaming, **serializers)


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc.aio is untyped here
    def __init__(self, api_keys: ApiKeys, metrics: Metrics, exempt: frozenset[str]) -> None:
        self._keys = api_keys
        self._metrics = metrics
        self._exempt = tuple(prefix for family in sorted(exempt) for prefix in EXEMPT_METHODS[family])

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(self._exempt):
            return handler
        metadata = handler_call_details.invocation_metadata or ()
        authorization = next((str(v) for k, v in metadata if k == "authorization"), None)
        reason = self._keys.verify(authorization)
        if reason is None:
            return handler
        self._metrics.unauthenticated.labels(TRANSPORT, reason).inc()
        return _refusal(handler, MISSING if reason == "missing" else INVALID)
