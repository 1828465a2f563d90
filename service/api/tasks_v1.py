"""What each /v1 task route does, once: its request model -> the DataPlane call -> its response.

The FastAPI routes (routes_v1.py) and the REST fast path (fast_path.py) both run these, so the
two differ only in how the body is parsed and the response written, never in what is served.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter
from starlette.requests import Request

from service.api import converters_v1 as conv
from service.api.admission import V1_TASKS
from service.api.calls import inference_call, record_timings
from service.api.schemas_v1 import (
    AnswerRequest,
    AnswerResponse,
    ClassifyRequest,
    ClassifyResponse,
    TokenClassifyRequest,
    TokenClassifyResponse,
)
from service.dataplane import Call, DataPlane
from service.pipeline import Timings

Served = tuple[BaseModel, Timings]


@dataclass(frozen=True)
class TaskRoute:
    path: str  # the full path, e.g. /v1/classify
    request: type[BaseModel]
    response: type[BaseModel]
    run: Callable[[Call, Any, float], Awaitable[Served]]  # (call, parsed request, deadline)

    @property
    def task(self) -> str:
        return V1_TASKS[self.path]

    async def serve(self, plane: DataPlane, request: Request, body: Any, deadline: float) -> BaseModel:
        """The route's response: counted and resolved by the DataPlane, run, timings kept for the
        response headers. `request` is the HTTP request (calls.py keeps its state in its scope)."""
        with inference_call(plane, request, self.task, body.model) as call:
            response, timings = await self.run(call, body, deadline)
        record_timings(request, timings)
        return response

    def response_json(self, response: BaseModel) -> bytes:
        """The response body exactly as FastAPI writes it for this route's response model."""
        return _ADAPTERS[self.response].dump_json(response, by_alias=True)


async def _classify(call: Call, body: ClassifyRequest, deadline: float) -> Served:
    inputs, params = conv.classify_inputs(body.inputs), conv.classify_params(body.parameters)
    result = await call.classify(inputs, params, deadline)
    return conv.classify_response(result), result.timings


async def _token_classify(call: Call, body: TokenClassifyRequest, deadline: float) -> Served:
    inputs, params = conv.token_inputs(body.inputs), conv.token_params(body.parameters)
    result = await call.tag_tokens(inputs, params, deadline)
    return conv.token_response(result), result.timings


async def _answer(call: Call, body: AnswerRequest, deadline: float) -> Served:
    inputs, params = conv.answer_inputs(body.inputs), conv.answer_params(body.parameters)
    result = await call.answer(inputs, params, deadline)
    return conv.answer_response(result), result.timings


CLASSIFY = TaskRoute("/v1/classify", ClassifyRequest, ClassifyResponse, _classify)
TOKEN_CLASSIFY = TaskRoute("/v1/token-classify", TokenClassifyRequest, TokenClassifyResponse, _token_classify)
ANSWER = TaskRoute("/v1/answer", AnswerRequest, AnswerResponse, _answer)
TASK_ROUTES = {route.path: route for route in (CLASSIFY, TOKEN_CLASSIFY, ANSWER)}
_ADAPTERS: dict[type[BaseModel], TypeAdapter[Any]] = {r.response: TypeAdapter(r.response) for r in TASK_ROUTES.values()}
