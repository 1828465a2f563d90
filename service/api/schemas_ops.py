"""Pydantic models of the operational routes: model listing, liveness and readiness."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ModelInfoOut(BaseModel):
    """One store entry. A failed entry whose manifest could not be read has an empty task."""

    name: str
    task: str
    labels: list[str]
    max_seq_len: int
    trained: bool
    ready: bool
    precision: str
    int8_vs_fp32: dict[str, Any] | None = Field(
        default=None,
        description="int8 vs fp32 on held-out text at export: agreement on decisive decisions, max |Δ probability|",
    )
    state: Literal["loading", "ready", "failed"]
    reason: str = Field("", description="Why a failed entry failed")


class ModelsResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "models": [
                        {
                            "name": "sequence-classification",
                            "task": "sequence-classification",
                            "labels": ["NEGATIVE", "POSITIVE"],
                            "max_seq_len": 512,
                            "trained": True,
                            "ready": True,
                            "precision": "int8",
                            "int8_vs_fp32": {
                                "eval_source": "built-in held-out half",
                                "rows": 88,
                                "unit": "row",
                                "decisions": 88,
                                "decisive": 81,
                                "agreement": 1.0,
                                "decisive_agreement": 1.0,
                                "max_prob_delta": 0.004,
                                "max_logit_delta": 0.02,
                                "entity_f1": None,
                                "start_end_agreement": None,
                            },
                            "state": "ready",
                            "reason": "",
                        }
                    ]
                }
            ]
        }
    )
    models: list[ModelInfoOut]


class LiveResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})
    status: Literal["ok"]


class ReadyResponse(BaseModel):
    """200 with `ready`; 503 with why not."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ready"}, {"status": "draining"}]})
    status: Literal["ready", "loading", "draining", "failed"]
