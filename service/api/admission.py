"""Which inference route a path is, before routing: for early admission and for counting refusals.

Under overload most requests are refused. A refusal that goes through FastAPI's routing, JSON
parsing, validation and dependencies costs CPU that the accepted requests' batches need on a
small machine, so the middleware asks the DataPlane once the body is read and, if every model
the route could reach has a full queue, answers 429 + Retry-After at once.

The same lookup labels the requests the middleware answers itself or that fail before the route
reaches the DataPlane (413, unparsable JSON, schema errors): they are counted like any other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

V1_TASKS = {
    "/v1/classify": "sequence-classification",
    "/v1/token-classify": "token-classification",
    "/v1/answer": "question-answering",
}
V2_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/[^/]+)?/infer$")
TRANSPORT = "http"
# Set in the ASGI scope's state by a route once the DataPlane counts the request.
COUNTED_STATE_KEY = "counted"
TIMINGS_STATE_KEY = "timings"  # routes put the ServiceResult's Timings in the scope's state


@dataclass(frozen=True)
class InferenceRoute:
    task: str | None  # /v1: from the path
    model: str | None  # /v2: from the path


def inference_route(method: str, path: str) -> InferenceRoute | None:
    """The inference route of a request, or None for everything else (health, metadata, docs)."""
    if method != "POST":
        return None
    task = V1_TASKS.get(path)
    if task is not None:
        return InferenceRoute(task, None)
    match = V2_INFER.match(path)
    return InferenceRoute(None, match.group(1)) if match else None
