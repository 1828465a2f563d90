"""Creates ONNX Runtime sessions with the options measured to be fastest for our graphs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import onnxruntime as ort

Spinning = Literal["run", "always", "off"]


@dataclass(frozen=True)
class SessionConfig:
    intra_op_threads: int = 2
    # How ORT's intra-op workers wait for work: "run" spins inside a run (between its ops) and
    # sleeps between runs; "always" spins between runs too (ORT's default); "off" never spins.
    # Measured in Settings.ort_spinning.
    spinning: Spinning = "run"


def create_session(graph: Path, config: SessionConfig | None = None) -> ort.InferenceSession:
    config = config or SessionConfig()
    options = ort.SessionOptions()
    options.intra_op_num_threads = config.intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0" if config.spinning == "off" else "1")
    options.add_session_config_entry("session.force_spinning_stop", "1" if config.spinning == "run" else "0")
    return ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
