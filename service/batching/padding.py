"""Turning rows into one batch's feeds (packed or padded, as the graph takes them) and back."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.batching.rows import EncodedRow, RowOutput
from service.batching.types import BatchSpec
from service.runtime.layout import LayoutError, make_feeds
from service.runtime.layout import split_outputs as split_by_layout

BatchOutputError = LayoutError  # the runner returned outputs that do not match the batch


def check_row(row: EncodedRow) -> None:
    """Reject malformed rows at submit time, where the bug is, not inside someone else's batch."""
    feeds = row.feeds()
    shapes = {array.shape for array in feeds.values()}
    if len(shapes) != 1 or row.input_ids.ndim != 1 or row.length == 0:
        raise ValueError(f"an EncodedRow needs equal-length non-empty 1-D feeds, got {sorted(shapes)}")


def pad_rows(rows: Sequence[EncodedRow], spec: BatchSpec) -> dict[str, np.ndarray]:
    """The batch's feeds in the spec's layout (padded: int64 [rows, longest] per feed)."""
    return make_feeds(spec.layout, [row.feeds() for row in rows], spec.pad_values)


def split_outputs(outputs: Sequence[np.ndarray], rows: Sequence[EncodedRow], spec: BatchSpec) -> list[RowOutput]:
    """Row i gets its piece of every output, token-level ones cut to the row's own length."""
    return split_by_layout(spec.layout, outputs, [row.length for row in rows], spec.token_level)
