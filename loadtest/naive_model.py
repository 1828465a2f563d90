"""The naive baselines' one model: an ORT session on a store entry and one `session.run` per request.

Shared by the naive REST app (loadtest/naive_app.py) and the naive gRPC server
(loadtest/naive_grpc.py), so both transports do exactly the same work per request.

What a user with our exported entry and our library would write without a batcher: the entry's
own model.onnx in ONE ONNX Runtime session (default options, so its threads spin between runs, as
a user's would), and per request: squeezeserve's own task handler encodes the inputs into rows (a
long QA context becomes several windows, doc_stride and all), the rows go through ONE
`session.run` together (packed or padded, whichever the graph takes), and the same handler turns
the outputs into pipeline-shaped results (softmax and labels, entity aggregation, span search).
Tokenization and pre/post-processing are squeezeserve's code on purpose: the comparison
(loadtest.vs) is about the batching and the serving path, not about who wrote the span search.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnxruntime as ort

from service.errors import InvalidInput, WrongTask
from service.manifest import read_manifest
from service.runtime.layout import make_feeds, session_layout, split_outputs
from service.tasks.base import Limits, ModelInfo, Prepared
from service.tasks.catalog import TASKS
from service.tokenization import TextTokenizer


def naive_session(graph: Path, threads: int) -> ort.InferenceSession:
    """The session a user would open: ORT's default options but the thread count."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])


class NaiveModel:
    """One store entry (the task its manifest names), run once per request with no batching."""

    def __init__(self, entry: Path, threads: int = 2) -> None:
        self.manifest = read_manifest(entry, verify_graph=False)
        self.name = self.manifest.name
        self.task = TASKS[self.manifest.task]
        self.tokenizer = TextTokenizer.from_file(entry / self.manifest.tokenizer_file, self.manifest.max_seq_len)
        m = self.manifest
        info = ModelInfo(id2label=m.id2label, problem_type=m.problem_type, max_seq_len=m.max_seq_len)
        self.handler = self.task.make_handler(self.tokenizer, info, Limits())
        self.session = naive_session(entry / m.graph_file, threads)
        self.layout = session_layout(self.session)
        self.input_names = [i.name for i in self.session.get_inputs()]

    def feeds(self, prepared: Prepared) -> dict[str, Any]:
        """The session's inputs for a request's rows, all in one run (packed or padded)."""
        rows = [row.feeds() for row in prepared.rows]
        feeds = make_feeds(self.layout, rows, {"input_ids": self.tokenizer.pad_id})
        return {name: feeds[name] for name in self.input_names}

    def infer(self, task: str, inputs: Sequence[Any], params: Any) -> list[list[Any]]:
        """One request: encode into rows, one session.run on all of them, results per input."""
        if task != self.task.name:
            raise WrongTask(f"model {self.name!r} serves {self.task.name}, not {task}")
        prepared = self.handler.preprocess(inputs, params)
        if not prepared.rows:
            raise InvalidInput("nothing to run: the inputs produced no model rows")
        outputs = self.session.run(None, self.feeds(prepared))
        lengths = [row.length for row in prepared.rows]
        per_row = split_outputs(self.layout, outputs, lengths, self.task.token_level)
        results: list[list[Any]] = self.handler.postprocess(prepared, per_row, params)
        return results


def from_env() -> NaiveModel:
    """SQZ_NAIVE_MODEL_DIR (the store entry) and SQZ_NAIVE_THREADS (ORT intra-op threads, 2)."""
    return NaiveModel(Path(os.environ["SQZ_NAIVE_MODEL_DIR"]), int(os.environ.get("SQZ_NAIVE_THREADS", "2")))
