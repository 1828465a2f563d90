"""What every gRPC inference call shares: the DataPlane's call, error mapping, deadline, timings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc

from service.dataplane import Call, DataPlane
from service.grpc.errors import mapped_errors
from service.grpc.metadata import timing_metadata
from service.logs import note_request
from service.pipeline import Timings

TRANSPORT = "grpc"


@asynccontextmanager
async def inference_call(
    plane: DataPlane, context: grpc.aio.ServicerContext, task: str | None, model: str | None, version: str = ""
) -> AsyncIterator[Call]:
    """Counted, model resolved once (task None: the model decides), whatever it raises mapped."""
    async with mapped_errors(context):
        with plane.call(TRANSPORT, task, model, version) as call:
            yield call


def request_deadline(plane: DataPlane, context: grpc.aio.ServicerContext) -> float:
    """The client's gRPC deadline (if any), capped by the server's request timeout."""
    return plane.deadline_from(context.time_remaining())


def send_timings(context: grpc.aio.ServicerContext, timings: Timings) -> None:
    context.set_trailing_metadata(timing_metadata(timings))
    note_request(timings=timings)
