"""Creates ONNX Runtime sessions with the options measured to be fastest for our graphs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort


@dataclass(frozen=True)
class SessionConfig:
    intra_op_threads: int = 2
    # Spinning workers wait for work busily. Off: on 2 cores they steal the CPU from the event
    # loop and from concurrent runs (measured: Settings.ort_spinning).
    allow_spinning: bool = False


def create_session(graph: Path, config: SessionConfig | None = None) -> ort.InferenceSession:
    config = config or SessionConfig()
    options = ort.SessionOptions()
    options.intra_op_num_threads = config.intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if config.allow_spinning else "0")
    return ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
