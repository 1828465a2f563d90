"""AccessLogInterceptor (outermost): one access line per unary gRPC call, refusals included.

Streaming methods (health Watch, reflection) are long-lived and not logged. The request id is
the caller's `x-request-id` metadata when it is sane, else a fresh one.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from service.logs import RequestRecord, current_request, write_access_line

TRANSPORT = "grpc"
_SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def _request_id(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == "x-request-id" and isinstance(value, str) and _SANE_ID.fullmatch(value):
            return value
    return uuid.uuid4().hex


def _status(context: grpc.aio.ServicerContext, failed: bool) -> str:
    code = context.code()
    if code is None:
        return "UNKNOWN" if failed else "OK"
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


class AccessLogInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or not handler.unary_unary:
            return handler
        behavior = handler.unary_unary
        method: str = handler_call_details.method
        request_id = _request_id(handler_call_details.invocation_metadata)

        async def logged(request: Any, context: grpc.aio.ServicerContext) -> Any:
            record = RequestRecord(request_id, TRANSPORT, "RPC", method)
            token = current_request.set(record)
            failed = True
            try:
                response = await behavior(request, context)
                failed = False
                return response
            finally:
                current_request.reset(token)
                write_access_line(record, _status(context, failed))

        return grpc.unary_unary_rpc_method_handler(
            logged,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
