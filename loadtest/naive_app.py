"""The simplest REST server a user could write around our own exported graph: no batching at all.

    SQZ_NAIVE_MODEL_DIR=model_store/demo-classify SQZ_NAIVE_THREADS=2 \
        uvicorn loadtest.naive_app:app --host 127.0.0.1 --port N --log-level warning

FastAPI, plain `def` endpoints (FastAPI runs them in its thread pool, so concurrent requests run
concurrently on the one session), squeezeserve's /v1 request and response shapes for the task the
entry's manifest names (the other task routes answer 400, as squeezeserve's do for a model of
another task). Per request: loadtest/naive_model.py, one `session.run` on the entry's model.onnx
with squeezeserve's own tokenization and task pre/post-processing (said plainly there). This is
the baseline squeezeserve's batching must beat (loadtest.vs); loadtest/naive_grpc.py is its gRPC twin.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from loadtest.naive_model import from_env
from service.api import converters_v1 as conv
from service.api.schemas_v1 import AnswerRequest, ClassifyRequest, TokenClassifyRequest
from service.errors import ERROR_TABLE, ServiceError
from service.v2.tasks import entity_dict

model = from_env()
app = FastAPI()


@app.exception_handler(ServiceError)
def service_error(request: Request, exc: ServiceError) -> JSONResponse:
    body = {"error": {"type": exc.kind, "message": exc.message}}
    return JSONResponse(body, status_code=ERROR_TABLE[exc.kind].http)


def response(results: list[list[dict[str, Any]]]) -> dict[str, Any]:
    return {"model": model.name, "results": [[{**r, "score": float(r["score"])} for r in rs] for rs in results]}


@app.get("/readyz")
def readyz() -> dict[str, str]:
    return {"status": "ready"}


@app.post("/v1/classify")
def classify(body: ClassifyRequest) -> dict[str, Any]:
    inputs, params = conv.classify_inputs(body.inputs), conv.classify_params(body.parameters)
    results = model.infer("sequence-classification", inputs, params)
    return response([[asdict(x) for x in r] for r in results])


@app.post("/v1/token-classify")
def token_classify(body: TokenClassifyRequest) -> dict[str, Any]:
    inputs, params = conv.token_inputs(body.inputs), conv.token_params(body.parameters)
    results = model.infer("token-classification", inputs, params)
    return response([[entity_dict(x) for x in r] for r in results])


@app.post("/v1/answer")
def answer(body: AnswerRequest) -> dict[str, Any]:
    inputs, params = conv.answer_inputs(body.inputs), conv.answer_params(body.parameters)
    results = model.infer("question-answering", inputs, params)
    return response([[asdict(x) for x in r] for r in results])
