"""THE place the gRPC transport turns exceptions into statuses (codes from service.errors.ERROR_TABLE)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import NoReturn

import grpc

from service.errors import ERROR_TABLE, Overloaded, RuntimeFailure, ServiceError
from service.grpc.metadata import Metadata, retry_metadata

log = logging.getLogger(__name__)


def status_of(error: ServiceError) -> tuple[grpc.StatusCode, str, Metadata]:
    """Code, client-safe message and trailing metadata for a service error."""
    status = ERROR_TABLE.get(error.kind, ERROR_TABLE[ServiceError.kind])
    code = grpc.StatusCode[status.grpc]
    if isinstance(error, RuntimeFailure) or code is grpc.StatusCode.INTERNAL:
        return code, RuntimeFailure.public_message, ()
    if isinstance(error, Overloaded):
        return code, error.message, retry_metadata(error.retry_after_s)
    return code, error.message, ()


async def abort_with(context: grpc.aio.ServicerContext, error: ServiceError) -> NoReturn:
    code, message, trailing = status_of(error)
    if code is grpc.StatusCode.INTERNAL:
        log.error("gRPC request failed: %s", error.message, exc_info=error)
    await context.abort(code, message, trailing_metadata=trailing)
    raise AssertionError("context.abort returned")  # it always raises


@asynccontextmanager
async def mapped_errors(context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
    """Abort the RPC with the table's status for whatever escapes the block.

    Cancellation (asyncio.CancelledError, a BaseException) is deliberately not caught: the
    client left, the handler task must unwind and the service drops the request's rows.
    """
    try:
        yield
    except grpc.aio.AbortError:
        raise
    except ServiceError as error:
        await abort_with(context, error)
    except Exception as error:  # a bug: logged with its trace, the client sees only the generic message
        failure = RuntimeFailure(f"unexpected {type(error).__name__} in a gRPC handler: {error}")
        failure.__cause__ = error
        await abort_with(context, failure)
