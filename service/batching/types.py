"""The batcher's contracts: what runs a batch, how rows are padded, knobs, and what it reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class BatchRunner(Protocol):
    """Runs one batch synchronously (called from the batcher's own worker thread).

    Returns one array per model output. The batcher gives each entry of its runner list one batch
    at a time; the same object listed twice must be thread-safe (an ORT session is).
    """

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]: ...


@dataclass(frozen=True)
class BatchSpec:
    """How to pad rows into a batch and how to split outputs back into rows."""

    pad_values: Mapping[str, int]  # feed name -> pad value (input_ids: the tokenizer's pad id)
    token_level: tuple[bool, ...]  # per output: per token (cut to row length) or per row
    # "packed": real tokens only, concatenated (service/runtime/layout.py); "padded": [rows, longest].
    layout: str = "padded"
    # Cost of one (query, key) place of the padded attention view relative to one token through
    # the linear layers (service/batching/queue.py BatchCost); 0: padding judged by tokens alone.
    attention_cost: float = 0.0


@dataclass(frozen=True)
class BatcherConfig:
    max_batch_size: int = 32  # rows per ORT run
    # rows x longest: the attention view (a padded graph: all of it). 512 since batches run side
    # by side on one core each (docs/benchmarks.md, "Runs side by side": 1.01-1.06x over 1024).
    max_batch_tokens: int = 512
    max_batch_delay_ms: float = 2.0  # how long the oldest row may wait for a batch to fill
    # True: when requests come one at a time (the last batch held one row) and no other request
    # is being tokenized (expecting()), a row goes at once, so a lone caller pays no delay; a
    # batch otherwise waits up to max_batch_delay_ms. False: always hold a partial batch that long.
    adaptive_delay: bool = True
    max_queued_rows: int = 1024  # beyond this, submit raises Overloaded at once
    group_by_length: bool = True  # False: plain FIFO batches (kept for benchmark comparison)
    # Length-grouped batches only take a row if the batch stays at least this share real tokens
    # (real / (rows x longest)); measured: padding, not batch size, dominates mixed traffic.
    min_padding_efficiency: float = 0.8


class BatcherObserver(Protocol):
    """Hooks for metrics; the batcher calls them from the event loop thread."""

    def on_queue_depth(self, rows: int) -> None: ...

    def on_rows_dropped(self, reason: str, rows: int) -> None: ...  # reason: "expired" | "cancelled"

    # Rows that ran but whose outputs nobody took: reason "expired" (the deadline passed during
    # the run) | "cancelled" (the caller left during the run).
    def on_rows_discarded(self, reason: str, rows: int) -> None: ...

    def on_batch(
        self, rows: int, padded_tokens: int, real_tokens: int, queue_waits_s: list[float], run_s: float
    ) -> None: ...


class NullObserver:
    def on_queue_depth(self, rows: int) -> None:
        pass

    def on_rows_dropped(self, reason: str, rows: int) -> None:
        pass

    def on_rows_discarded(self, reason: str, rows: int) -> None:
        pass

    def on_batch(
        self, rows: int, padded_tokens: int, real_tokens: int, queue_waits_s: list[float], run_s: float
    ) -> None:
        pass
