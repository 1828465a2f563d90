"""The outer gRPC interceptors of unary calls: tracing (outermost), then the access log.

Streaming methods (health Watch, reflection) are long-lived and pass through unwrapped. The
request id is the caller's `x-request-id` metadata when it is sane, else a fresh one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import grpc

from service import tracing
from service.grpc.guard import EXEMPT_METHODS
from service.logs import REQUEST_ID_KEY, RequestRecord, current_request, request_id, write_access_line

TRANSPORT = "grpc"
Around = Callable[[grpc.HandlerCallDetails, grpc.aio.ServicerContext], AbstractAsyncContextManager[None]]


def _request_id(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == REQUEST_ID_KEY and isinstance(value, str):
            return request_id(value)
    return request_id(None)


def status_of(context: grpc.aio.ServicerContext, failed: bool) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK


class _UnaryInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc.aio is untyped here
    """Runs every unary call's behavior inside `self.around(details, context)`."""

    def around(self, details: grpc.HandlerCallDetails, context: grpc.aio.ServicerContext) -> Any:
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or not handler.unary_unary:
            return handler
        behavior = handler.unary_unary

        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with self.around(handler_call_details, context):
                return await behavior(request, context)

        return grpc.unary_unary_rpc_method_handler(
            wrapped, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )


class AccessLogInterceptor(_UnaryInterceptor):
    @asynccontextmanager
    async def around(self, details: grpc.HandlerCallDetails, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        record = RequestRecord(_request_id(details.invocation_metadata), TRANSPORT, "RPC", details.method)
        token = current_request.set(record)
        failed = True
        try:
            yield
            failed = False
        finally:
            current_request.reset(token)
            write_access_line(record, status_of(context, failed).name)


class TracingInterceptor(_UnaryInterceptor):
    """Health checks are not traced (see api/tracing.py)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if handler_call_details.method.startswith(EXEMPT_METHODS["health"]):
            return await continuation(handler_call_details)
        return await super().intercept_service(continuation, handler_call_details)

    @asynccontextmanager
    async def around(self, details: grpc.HandlerCallDetails, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        service, _, method = details.method.lstrip("/").partition("/")
        carrier = {k: v for k, v in details.invocation_metadata or () if isinstance(v, str)}
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}
        with tracing.request_span(details.method.lstrip("/"), carrier, attributes) as span:
            failed = True
            try:
                yield
                failed = False
            finally:
                code = status_of(context, failed)
                if span is not None:  # None: tracing was stopped while the server ran (tests)
                    span.set_attribute("rpc.grpc.status_code", code.value[0])
                    if code != grpc.StatusCode.OK:
                        span.set_status(tracing.error_status(code.name))
