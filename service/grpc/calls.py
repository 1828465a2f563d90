"""What every gRPC inference call shares: draining check, metrics, error mapping, deadline, timings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc

from service.core import Core
from service.errors import NotReady
from service.grpc.errors import mapped_errors
from service.grpc.metadata import timing_metadata
from service.logs import note_request
from service.metrics import RequestLabels
from service.pipeline import Timings


@asynccontextmanager
async def inference_call(core: Core, context: grpc.aio.ServicerContext, task: str) -> AsyncIterator[RequestLabels]:
    """Count the call under `task` (fill labels.model once known) and map whatever it raises."""
    async with mapped_errors(context):
        with core.metrics.track("grpc", task) as labels:
            if core.state.draining:
                raise NotReady("the server is shutting down")
            yield labels


def request_deadline(core: Core, context: grpc.aio.ServicerContext) -> float:
    """The client's gRPC deadline (if any), capped by the server's request timeout."""
    return core.service.deadline_from(context.time_remaining())


def send_timings(context: grpc.aio.ServicerContext, timings: Timings) -> None:
    context.set_trailing_metadata(timing_metadata(timings))
    note_request(timings=timings)
