"""The simplest server a user could write around our own exported graph: no batching at all.

    SQZ_NAIVE_MODEL_DIR=model_store/demo-classify SQZ_NAIVE_THREADS=2 \
        uvicorn loadtest.naive_app:app --host 127.0.0.1 --port N --log-level warning

One ONNX Runtime session on the store entry's own model.onnx, a plain `def` endpoint (FastAPI runs
it in its thread pool, so concurrent requests run concurrently on the one session), the entry's
tokenizer, softmax, the same request and response shape as squeezeserve's /v1/classify. It reads
the graph in whatever layout the entry was exported with (one row is the same in both).
This is the baseline squeezeserve's batching must beat (loadtest.vs).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict
from tokenizers import Tokenizer

entry = Path(os.environ["SQZ_NAIVE_MODEL_DIR"])
manifest = json.loads((entry / "manifest.json").read_text())
tokenizer = Tokenizer.from_file(str(entry / "tokenizer.json"))
tokenizer.enable_truncation(manifest["max_seq_len"])
options = ort.SessionOptions()
options.intra_op_num_threads = int(os.environ.get("SQZ_NAIVE_THREADS", "2"))
session = ort.InferenceSession(str(entry / "model.onnx"), options, providers=["CPUExecutionProvider"])
packed = len(session.get_inputs()[0].shape) == 1
labels = {int(k): v for k, v in manifest["id2label"].items()}
app = FastAPI()


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore")
    inputs: str | list[str]


@app.get("/readyz")
def readyz() -> dict[str, str]:
    return {"status": "ready"}


@app.post("/v1/classify")
def classify(body: Body) -> dict[str, Any]:
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    results = []
    for text in texts:
        encoding = tokenizer.encode(text)
        ids = np.array(encoding.ids, dtype=np.int64)
        feeds = {"input_ids": ids, "token_type_ids": np.array(encoding.type_ids, dtype=np.int64)}
        feeds = {k: v if packed else v[None, :] for k, v in feeds.items()}
        feeds["attention_mask"] = np.ones((1, len(ids)), dtype=np.int64)
        logits = session.run(None, feeds)[0][0]
        scores = np.exp(logits - logits.max())
        scores /= scores.sum()
        best = int(scores.argmax())
        results.append([{"label": labels[best], "score": float(scores[best])}])
    return {"model": manifest["name"], "results": results}
