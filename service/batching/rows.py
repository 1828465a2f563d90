"""The batcher's unit of work: an encoded row in, a row's outputs and timings out.

Below the tasks and the pipeline: a task turns its inputs into EncodedRows and the RowOutputs
back into results; the batcher sees only rows and futures, never a task.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EncodedRow:
    """One model input row, unpadded: int64 1-D arrays of equal length."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[0])

    def feeds(self) -> dict[str, np.ndarray]:
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "token_type_ids": self.token_type_ids,
        }


# What the batcher returns per row: one array per model output, in the manifest's output order.
# Token-level outputs ([batch, sequence, ...]) are already cut to the row's own length.
RowOutput = list[np.ndarray]


@dataclass(frozen=True)
class RowResult:
    """What a row's future resolves to: its outputs and where its time went."""

    outputs: RowOutput
    queue_s: float  # submitted -> its batch started
    run_s: float  # its batch's ORT run (shared by every row of the batch)
    batch_rows: int = 1  # rows in that batch (a tracing attribute)
