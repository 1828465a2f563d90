"""What every inference route does around its service call: admission, deadline, metrics, timings."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Header, Request
from pydantic import WithJsonSchema

from service.api.limits import TIMEOUT_HEADER
from service.api.middleware import TIMINGS_STATE_KEY
from service.core import Core
from service.errors import NotReady
from service.metrics import RequestLabels
from service.pipeline import Timings

TRANSPORT = "http"


def deadline_dependency(core: Core) -> Callable[..., Awaitable[float]]:
    """FastAPI dependency: the request's absolute deadline (the client may only shorten the server's)."""

    async def deadline(
        timeout_s: Annotated[
            float | None,
            Header(
                alias=TIMEOUT_HEADER,
                gt=0,
                allow_inf_nan=False,
                description="Seconds this request may take; capped at the server's request timeout",
            ),
            # Documented as a plain number: the header is either absent or a number, never "null".
            WithJsonSchema({"type": "number", "exclusiveMinimum": 0}),
        ] = None,
    ) -> float:
        return core.service.deadline_from(timeout_s)

    return deadline


@contextmanager
def tracked(core: Core, task: str) -> Iterator[RequestLabels]:
    """Count the request in the metrics and refuse new work while draining (503, like loading).

    The caller sets labels.model once the model is resolved (never from the raw request: client-chosen
    names would grow the series without bound).
    """
    with core.metrics.track(TRANSPORT, task) as labels:
        if core.state.draining:
            raise NotReady("the server is draining; retry on another instance")
        yield labels


def record_timings(request: Request, timings: Timings) -> None:
    """Hand the timings to the middleware, which turns them into X-Timing-* headers."""
    setattr(request.state, TIMINGS_STATE_KEY, timings)
