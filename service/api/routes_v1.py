"""The /v1 task API: classify, token-classify, answer (pipeline-shaped results) and the model list."""

# No `from __future__ import annotations`: FastAPI must evaluate the closures' local `Deadline` alias.

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request

from service.api.calls import deadline_dependency
from service.api.errors import ANY_ROUTE_ERRORS, INFERENCE_ERRORS, documented_errors
from service.api.middleware import TIMING_HEADERS
from service.api.schemas_ops import ModelInfoOut, ModelsResponse
from service.api.schemas_v1 import (
    AnswerRequest,
    AnswerResponse,
    ClassifyRequest,
    ClassifyResponse,
    TokenClassifyRequest,
    TokenClassifyResponse,
)
from service.api.tasks_v1 import ANSWER, CLASSIFY, TOKEN_CLASSIFY
from service.dataplane import DataPlane

ERRORS: dict[int | str, dict[str, Any]] = {
    **documented_errors(*INFERENCE_ERRORS),
    200: {"headers": TIMING_HEADERS},
}

CLASSIFY_EXAMPLES = {
    "one text": {"value": {"inputs": "I loved this film"}},
    "batch, all labels": {"value": {"inputs": ["Great!", "Dull."], "parameters": {"top_k": None}}},
    "text pairs": {"value": {"inputs": [{"text": "A man sleeps.", "text_pair": "Someone rests."}]}},
}
TOKEN_EXAMPLES = {
    "tokens": {"value": {"inputs": "Ada Lovelace lived in London"}},
    "entity groups": {
        "value": {"inputs": ["Ada Lovelace lived in London"], "parameters": {"aggregation_strategy": "simple"}}
    },
}
ANSWER_EXAMPLES = {
    "one question": {"value": {"inputs": {"question": "Where?", "context": "The treaty was signed in Vienna."}}},
    "top 3": {
        "value": {
            "inputs": [{"question": "When?", "context": "It was signed in 1815."}],
            "parameters": {"top_k": 3},
        }
    },
}


def build_v1_router(plane: DataPlane) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["v1"])
    _add_classify(router, plane)
    _add_token_classify(router, plane)
    _add_answer(router, plane)

    @router.get("/models", summary="List the served models", responses=documented_errors(*ANY_ROUTE_ERRORS))
    async def models() -> ModelsResponse:
        return ModelsResponse(models=[ModelInfoOut(**vars(s)) for s in plane.models()])

    return router


def _add_classify(router: APIRouter, plane: DataPlane) -> None:
    Deadline = Annotated[float, Depends(deadline_dependency(plane))]

    @router.post("/classify", summary="Classify texts or text pairs", responses=ERRORS)
    async def classify(
        body: Annotated[ClassifyRequest, Body(openapi_examples=CLASSIFY_EXAMPLES)], request: Request, deadline: Deadline
    ) -> ClassifyResponse:
        return await CLASSIFY.serve(plane, request, body, deadline)  # type: ignore[return-value]


def _add_token_classify(router: APIRouter, plane: DataPlane) -> None:
    Deadline = Annotated[float, Depends(deadline_dependency(plane))]

    @router.post("/token-classify", summary="Tag tokens (named entities)", responses=ERRORS)
    async def token_classify(
        body: Annotated[TokenClassifyRequest, Body(openapi_examples=TOKEN_EXAMPLES)],
        request: Request,
        deadline: Deadline,
    ) -> TokenClassifyResponse:
        return await TOKEN_CLASSIFY.serve(plane, request, body, deadline)  # type: ignore[return-value]


def _add_answer(router: APIRouter, plane: DataPlane) -> None:
    Deadline = Annotated[float, Depends(deadline_dependency(plane))]

    @router.post("/answer", summary="Answer questions from a context", responses=ERRORS)
    async def answer(
        body: Annotated[AnswerRequest, Body(openapi_examples=ANSWER_EXAMPLES)], request: Request, deadline: Deadline
    ) -> AnswerResponse:
        return await ANSWER.serve(plane, request, body, deadline)  # type: ignore[return-value]
