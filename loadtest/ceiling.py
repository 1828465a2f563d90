"""The raw ONNX Runtime ceiling for a store entry: the served graph alone, no server, synthetic rows."""

from __future__ import annotations

from pathlib import Path

from service.bench.timing import Measurement, measure
from service.runtime.session import SessionConfig, create_session


def raw_ort_ceiling(
    model_dir: Path, seq_lens: tuple[int, ...], batches: tuple[int, ...], threads: int = 2, runs: int = 20
) -> list[Measurement]:
    session = create_session(model_dir / "model.onnx", SessionConfig(intra_op_threads=threads))
    declared = [i.name for i in session.get_inputs()]

    def run(feeds: dict) -> object:
        return session.run(None, {k: feeds[k] for k in declared})

    return [measure("int8 served graph", run, seq, batch, runs) for seq in seq_lens for batch in batches]
