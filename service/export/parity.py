"""Export-time checks: fp32 ONNX vs PyTorch, int8 vs fp32 agreement, and int8 batch invariance."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from service.export.calibration import Feeds
from service.runtime.layout import from_padded, session_layout

FP32_TOLERANCE = 1e-4


def run_torch(model: Any, feeds: Feeds, output_names: Sequence[str]) -> list[np.ndarray]:
    import torch

    with torch.inference_mode():
        out = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    return [out[name].float().numpy() for name in output_names]


def run_onnx(session: Any, feeds: Feeds) -> list[np.ndarray]:
    """Run padded [rows, longest] feeds on a graph of either layout; outputs come back padded.

    A packed graph gets the same rows packed, and its per-token outputs are laid back into
    [rows, longest, ...] (zeros at the pads), so every check compares like with like.
    """
    names = {i.name for i in session.get_inputs()}
    layout = session_layout(session)
    outputs = session.run(None, {k: v for k, v in from_padded(layout, feeds).items() if k in names})
    if layout == "padded":
        return list(outputs)
    mask = feeds["attention_mask"].astype(bool)
    tokens = int(mask.sum())
    return [_unpack(out, mask) if out.shape[0] == tokens != mask.shape[0] else out for out in outputs]


def _unpack(packed: np.ndarray, mask: np.ndarray) -> np.ndarray:
    padded = np.zeros(mask.shape + packed.shape[1:], dtype=packed.dtype)
    padded[mask] = packed
    return padded


def _valid(output: np.ndarray, mask: np.ndarray, token_level: bool) -> np.ndarray:
    """Rows for sentence-level outputs; only real (unpadded) tokens for token-level outputs."""
    return output[mask.astype(bool)] if token_level else output


def max_abs_diff(a: list[np.ndarray], b: list[np.ndarray], mask: np.ndarray, token_level: bool) -> float:
    return max(float(np.abs(_valid(x, mask, token_level) - _valid(y, mask, token_level)).max()) for x, y in zip(a, b))


def top1_agreement(a: list[np.ndarray], b: list[np.ndarray], mask: np.ndarray, task: str) -> tuple[int, int]:
    """(agreeing, total) argmax decisions: per row, per real token, or per QA start/end."""
    agree = total = 0
    real = mask.astype(bool)
    for x, y in zip(a, b):
        if task == "token-classification":
            xs, ys = x.argmax(-1)[real], y.argmax(-1)[real]
        elif task == "question-answering":
            xs, ys = np.where(real, x, -np.inf).argmax(-1), np.where(real, y, -np.inf).argmax(-1)
        else:
            xs, ys = x.argmax(-1), y.argmax(-1)
        agree += int((xs == ys).sum())
        total += int(xs.size)
    return agree, total


def batch_invariance(session: Any, feeds: Feeds, token_level: bool) -> float:
    """Largest change in a row's outputs between running it alone (unpadded) and inside the batch."""
    batched = run_onnx(session, feeds)
    worst = 0.0
    for row in range(feeds["input_ids"].shape[0]):
        length = int(feeds["attention_mask"][row].sum())
        alone = run_onnx(session, {k: v[row : row + 1, :length] for k, v in feeds.items()})
        for whole, single in zip(batched, alone):
            part = whole[row : row + 1, :length] if token_level else whole[row : row + 1]
            worst = max(worst, float(np.abs(part - single).max()))
    return worst
