"""The naive baseline a user might write: FastAPI + a transformers pipeline (PyTorch), per request.

    SQZ_BASELINE_CHECKPOINT=DIR uvicorn loadtest.baseline_app:app --host 127.0.0.1 --port N

Same request shape as squeezeserve's /v1/classify (`{"inputs": "..."}`), so the same wrk bodies work.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict
from transformers import pipeline

classifier = pipeline("text-classification", model=os.environ["SQZ_BASELINE_CHECKPOINT"], device="cpu")
app = FastAPI()


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore")
    inputs: str | list[str]


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/classify")
def classify(body: Body) -> dict[str, Any]:
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    return {"results": [classifier(texts)]}
