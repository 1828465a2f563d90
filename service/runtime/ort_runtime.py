"""OrtRuntime: one ONNX Runtime session as a BatchRunner (declared inputs only), plus warm-up."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from service.runtime.layout import graph_layout, make_feeds
from service.runtime.session import SessionConfig, create_session


class OrtRuntime:
    """Runs batches (packed or padded, as the graph takes them) on one session.

    ONNX Runtime sessions are thread-safe: with runs_per_session > 1 the batcher lists the same
    runtime several times and runs that many batches on it at once.
    """

    def __init__(
        self,
        graph: Path,
        config: SessionConfig,
        input_names: tuple[str, ...],
        output_names: tuple[str, ...],
        layout: str = "padded",
    ) -> None:
        self.session = create_session(graph, config)
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        unknown = set(self.input_names) - set(input_names)
        if unknown:
            raise ValueError(f"graph inputs {sorted(unknown)} are not among the manifest's {input_names}")
        actual_layout = graph_layout({i.name: len(i.shape) for i in self.session.get_inputs()})
        if actual_layout != layout:
            raise ValueError(f"the graph takes {actual_layout} batches, the manifest says {layout}")
        self.layout = layout
        actual = tuple(o.name for o in self.session.get_outputs())
        if actual != output_names:
            raise ValueError(f"graph outputs {actual} differ from the manifest's {output_names}")
        self.output_names = output_names

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return list(self.session.run(None, {name: feeds[name] for name in self.input_names}))

    def warm_up(self, max_seq_len: int, max_batch_tokens: int, pad_id: int) -> None:
        """One run at the largest batch the batcher may form, so memory stays flat under load.

        The largest batch is max_batch_tokens places as max_seq_len-long rows: the most tokens
        through the linear layers and the largest attention view (rows x heads x longest^2) at
        once, so ORT's arena reaches its peak here instead of on the first long batch in
        production. (Runs at every length bucket, as before, added seconds to cold start and
        nothing to memory.)
        """
        rows = max(1, max_batch_tokens // max_seq_len)
        self.run(self.feeds(rows, max_seq_len, pad_id))

    def feeds(self, rows: int, length: int, pad_id: int) -> dict[str, np.ndarray]:
        """A synthetic batch of `rows` rows of `length` tokens in this graph's layout."""
        ids = np.full(length, pad_id + 1, dtype=np.int64)
        row = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        return make_feeds(self.layout, [row] * rows, {"input_ids": pad_id})
