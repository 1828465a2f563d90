"""Answer-span scoring for one QA window: masked start/end softmax, span band, top-k candidates.

The same numpy operations, in the same order and shapes, as transformers 4.57 `select_starts_ends`
and `decode_spans`, so ties and top-k selection break the same way as the pipeline's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MASKED_LOGIT = -10000.0  # what the pipeline writes over logits of tokens that cannot be in an answer
NO_NULL_SCORE = 1000000.0  # the pipeline's starting "minimum null score"


@dataclass(frozen=True)
class WindowSpans:
    starts: np.ndarray  # token indices, best span first
    ends: np.ndarray
    scores: np.ndarray  # p_start[s] * p_end[e], float32
    null_score: float  # p_start[0] * p_end[0] (the [CLS] "no answer" span) before [CLS] is zeroed


def answer_mask(p_mask: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """1 where a token may be part of an answer (context tokens and [CLS]), as int64."""
    return np.abs(p_mask.astype(np.int64) - 1) & attention_mask.astype(np.int64)


def _normalised(logits: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    masked = np.where(allowed == 0, MASKED_LOGIT, logits)
    exp = np.exp(masked - masked.max(axis=-1, keepdims=True))
    return np.asarray(exp / exp.sum())


def select_spans(
    start_logits: np.ndarray, end_logits: np.ndarray, allowed: np.ndarray, top_k: int, max_answer_len: int
) -> WindowSpans:
    """Best `top_k` spans of one window; start and end are softmaxed within this window only."""
    start = _normalised(start_logits[None, :], allowed[None, :])
    end = _normalised(end_logits[None, :], allowed[None, :])
    null_score = float((start[0, 0] * end[0, 0]).item())
    start[0, 0] = end[0, 0] = 0.0
    starts, ends, scores = _decode(start, end, top_k, max_answer_len, allowed[None, :])
    return WindowSpans(starts, ends, scores, null_score)


def _decode(
    start: np.ndarray, end: np.ndarray, top_k: int, max_answer_len: int, allowed: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    outer = np.matmul(np.expand_dims(start, -1), np.expand_dims(end, 1))
    # Spans with start <= end < start + max_answer_len.
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
    flat = candidates.flatten()
    if top_k == 1:
        order = np.array([np.argmax(flat)])
    elif len(flat) <= top_k:
        # `<=`, not the pipeline's `<`: with exactly top_k candidates its argpartition raises.
        order = np.argsort(-flat)
    else:
        best = np.argpartition(-flat, top_k)[0:top_k]
        order = best[np.argsort(-flat[best])]
    starts, ends = np.unravel_index(order, candidates.shape)[1:]
    # np.isin against nonzero()'s (row, column) pair, exactly as the pipeline does: the row
    # indices (all 0) make token 0 count as allowed whenever any token is.
    positions = allowed.nonzero()
    keep = np.isin(starts, positions) & np.isin(ends, positions)
    starts, ends = starts[keep], ends[keep]
    return starts, ends, candidates[0, starts, ends]
