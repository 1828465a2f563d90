"""What every inference route does around its DataPlane call: deadline, accounting, timings."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import Header, Request
from pydantic import Field, TypeAdapter, WithJsonSchema

from service.api.admission import COUNTED_STATE_KEY, TIMINGS_STATE_KEY, TRANSPORT
from service.api.limits import TIMEOUT_HEADER
from service.dataplane import Call, DataPlane
from service.pipeline import Timings

TIMEOUT_RULES: dict[str, Any] = {"gt": 0, "allow_inf_nan": False}  # the timeout header's value
_TIMEOUT = TypeAdapter(Annotated[float, Field(**TIMEOUT_RULES)])


def timeout_from_header(value: str) -> float:
    """The timeout header's value checked as the route's dependency checks it (ValidationError)."""
    return float(_TIMEOUT.validate_python(value))


def deadline_dependency(plane: DataPlane) -> Callable[..., Awaitable[float]]:
    """FastAPI dependency: the request's absolute deadline (the client may only shorten the server's)."""

    async def deadline(
        timeout_s: Annotated[
            float | None,
            Header(
                alias=TIMEOUT_HEADER,
                **TIMEOUT_RULES,
                description="Seconds this request may take; capped at the server's request timeout",
            ),
            # Documented as a plain number: the header is either absent or a number, never "null".
            WithJsonSchema({"type": "number", "exclusiveMinimum": 0}),
        ] = None,
    ) -> float:
        return plane.deadline_from(timeout_s)

    return deadline


@contextmanager
def inference_call(
    plane: DataPlane, request: Request, task: str | None, model: str | None, version: str = ""
) -> Iterator[Call]:
    """The DataPlane's call (counted, model resolved once); tells the middleware it was counted."""
    setattr(request.state, COUNTED_STATE_KEY, True)
    with plane.call(TRANSPORT, task, model, version) as call:
        yield call


def record_timings(request: Request, timings: Timings) -> None:
    """Hand the timings to the middleware, which turns them into X-Timing-* headers."""
    setattr(request.state, TIMINGS_STATE_KEY, timings)
