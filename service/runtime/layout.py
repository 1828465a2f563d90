"""How rows become a graph's feeds and its outputs become rows again: packed or padded layout.

A row is a dict of equal-length 1-D int64 arrays (input_ids, attention_mask, token_type_ids).

- packed: input_ids and token_type_ids are every row's tokens concatenated ([tokens]), and
  attention_mask is [rows, longest] with row i's first n_i places set. Per-token outputs come back
  as [tokens, ...] in the same order; per-row outputs as [rows, ...].
- padded: every feed is [rows, longest], pads at the end (attention_mask 0 there). Per-token
  outputs come back as [rows, longest, ...].
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

LAYOUTS = ("packed", "padded")
PACKED_FEEDS = ("input_ids", "token_type_ids")  # concatenated; attention_mask is the row map

Row = Mapping[str, np.ndarray]


class LayoutError(Exception):
    """Outputs that do not fit the batch they came from (count, type or shape)."""


def row_mask(lengths: Sequence[int]) -> np.ndarray:
    """[rows, longest] int64, row i's first lengths[i] places 1."""
    longest = max(lengths)
    return (np.arange(longest)[None, :] < np.asarray(lengths)[:, None]).astype(np.int64)


def make_feeds(layout: str, rows: Sequence[Row], pad_values: Mapping[str, int]) -> dict[str, np.ndarray]:
    if layout == "packed":
        if len(rows) == 1:  # a lone row is its own feeds: ~40 us less with the caches a run leaves
            feeds = {name: np.ascontiguousarray(rows[0][name], dtype=np.int64) for name in PACKED_FEEDS}
            feeds["attention_mask"] = np.ones((1, len(feeds["input_ids"])), dtype=np.int64)
            return feeds
        feeds = {name: np.concatenate([row[name] for row in rows], dtype=np.int64) for name in PACKED_FEEDS}
        feeds["attention_mask"] = row_mask([len(row["input_ids"]) for row in rows])
        return feeds
    longest = max(len(row["input_ids"]) for row in rows)
    padded: dict[str, np.ndarray] = {}
    for name in rows[0]:
        # Padded places are masked out, so 0 is safe for any feed without a pad value (and
        # attention_mask must be 0 there: that is what makes the padding invisible).
        pad = 0 if name == "attention_mask" else pad_values.get(name, 0)
        padded[name] = np.full((len(rows), longest), pad, dtype=np.int64)
        for i, row in enumerate(rows):
            padded[name][i, : len(row[name])] = row[name]
    return padded


def from_padded(layout: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Padded [rows, longest] feeds (pads at the end, attention_mask 0 there) in `layout`."""
    if layout == "padded":
        return dict(feeds)
    lengths = np.asarray(feeds["attention_mask"]).astype(bool).sum(axis=1)
    rows = [{name: values[i, : lengths[i]] for name, values in feeds.items()} for i in range(len(lengths))]
    return make_feeds(layout, rows, {})


def session_layout(session: Any) -> str:
    """The layout an ONNX Runtime session's graph takes."""
    return graph_layout({i.name: len(i.shape) for i in session.get_inputs()})


def split_outputs(
    layout: str, outputs: Sequence[np.ndarray], lengths: Sequence[int], token_level: Sequence[bool]
) -> list[list[np.ndarray]]:
    """Row i gets its own piece of every output: per-token ones cut to its own length.

    Each piece is a copy, so that a row's answer does not keep the whole batch's arrays alive.
    """
    check_outputs(layout, outputs, lengths, token_level)
    starts = [0, *itertools.accumulate(lengths)]  # Python ints: numpy calls cost ~10x after a run
    rows: list[list[np.ndarray]] = []
    for i, length in enumerate(lengths):
        per_row = []
        for output, per_token in zip(outputs, token_level):
            if not per_token:
                piece = output[i]
            elif layout == "packed":
                piece = output[starts[i] : starts[i] + length]
            else:
                piece = output[i, :length]
            per_row.append(np.array(piece))
        rows.append(per_row)
    return rows


def check_outputs(
    layout: str, outputs: Sequence[np.ndarray], lengths: Sequence[int], token_level: Sequence[bool]
) -> None:
    if not isinstance(outputs, Sequence) or len(outputs) != len(token_level):
        count = len(outputs) if isinstance(outputs, Sequence) else type(outputs).__name__
        raise LayoutError(f"expected {len(token_level)} outputs, got {count}")
    for k, (output, per_token) in enumerate(zip(outputs, token_level)):
        if not isinstance(output, np.ndarray) or output.ndim < 1:
            raise LayoutError(f"output {k}: expected an array, got {getattr(output, 'shape', type(output).__name__)}")
        if per_token and layout == "packed":
            expected: tuple[int, ...] = (sum(lengths),)
        elif per_token:
            expected = (len(lengths), max(lengths))
        else:
            expected = (len(lengths),)
        if output.shape[: len(expected)] != expected:
            raise LayoutError(f"output {k}: expected leading dimensions {expected}, got shape {output.shape}")


def graph_layout(input_ranks: Mapping[str, int]) -> str:
    """The layout a graph's declared inputs imply (input_ids rank 1: packed)."""
    return "packed" if input_ranks.get("input_ids") == 1 else "padded"
