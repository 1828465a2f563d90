"""Turning rows into one padded feed dict and a batch's outputs back into per-row outputs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.batching.types import BatchSpec
from service.tasks.base import EncodedRow, RowOutput


class BatchOutputError(Exception):
    """The runner returned outputs that do not match the batch (count, type or shape)."""


def check_row(row: EncodedRow) -> None:
    """Reject malformed rows at submit time, where the bug is, not inside someone else's batch."""
    feeds = row.feeds()
    shapes = {array.shape for array in feeds.values()}
    if len(shapes) != 1 or row.input_ids.ndim != 1 or row.length == 0:
        raise ValueError(f"an EncodedRow needs equal-length non-empty 1-D feeds, got {sorted(shapes)}")


def pad_rows(rows: Sequence[EncodedRow], spec: BatchSpec) -> dict[str, np.ndarray]:
    """Stack rows into int64 [rows, longest] arrays, padding each feed with its pad value."""
    longest = max(row.length for row in rows)
    feeds: dict[str, np.ndarray] = {}
    for name in rows[0].feeds():
        # Padded positions are masked out, so 0 is safe for any feed the spec does not name
        # (attention_mask must be 0 there, which is what makes the padding invisible).
        pad = 0 if name == "attention_mask" else spec.pad_values.get(name, 0)
        feeds[name] = np.full((len(rows), longest), pad, dtype=np.int64)
    for i, row in enumerate(rows):
        for name, values in row.feeds().items():
            feeds[name][i, : row.length] = values
    return feeds


def split_outputs(outputs: Sequence[np.ndarray], rows: Sequence[EncodedRow], spec: BatchSpec) -> list[RowOutput]:
    """Row i gets outputs[k][i] for every k, token-level ones cut to the row's own length.

    Each piece is copied so that a row's answer does not keep the whole batch's arrays alive.
    """
    check_outputs(outputs, len(rows), max(row.length for row in rows), spec)
    results: list[RowOutput] = []
    for i, row in enumerate(rows):
        per_row = [
            np.array(output[i, : row.length] if token_level else output[i])
            for output, token_level in zip(outputs, spec.token_level)
        ]
        results.append(per_row)
    return results


def check_outputs(outputs: Sequence[np.ndarray], rows: int, longest: int, spec: BatchSpec) -> None:
    if not isinstance(outputs, Sequence) or len(outputs) != len(spec.token_level):
        count = len(outputs) if isinstance(outputs, Sequence) else type(outputs).__name__
        raise BatchOutputError(f"expected {len(spec.token_level)} outputs, got {count}")
    for k, (output, token_level) in enumerate(zip(outputs, spec.token_level)):
        if not isinstance(output, np.ndarray) or output.ndim < 1 or output.shape[0] != rows:
            shape = getattr(output, "shape", type(output).__name__)
            raise BatchOutputError(f"output {k}: expected batch dimension {rows}, got shape {shape}")
        if token_level and (output.ndim < 2 or output.shape[1] != longest):
            raise BatchOutputError(f"output {k}: expected sequence dimension {longest}, got shape {output.shape}")
