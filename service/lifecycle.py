"""A model's lifecycle as everyone sees it: its state (loading -> ready | failed) and its status."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LOADING, READY, FAILED = "loading", "ready", "failed"
STATES = (LOADING, READY, FAILED)
STOPPED = "stopped"  # only told to state listeners at shutdown (the model_ready gauge drops to 0)


@dataclass(frozen=True)
class ModelStatus:
    name: str
    task: str  # "" when the entry failed before its manifest could be read
    labels: list[str]
    max_seq_len: int
    trained: bool
    ready: bool
    precision: str
    state: str = READY
    reason: str = ""  # why a failed entry failed
    # The export's held-out int8 figures (REST /v1/models); gRPC's ModelInfo does not carry them.
    int8_vs_fp32: dict[str, Any] | None = field(default=None, compare=False)
