"""Score functions over the last axis, computed the way the transformers pipelines compute them."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    # Max-shifted so large logits do not overflow; same operation order as the pipelines.
    if logits.ndim == 1:  # one row (sequence classification): the same numbers in fewer numpy calls
        shifted = np.exp(logits - logits.max())
        return np.asarray(shifted / shifted.sum())
    shifted = np.exp(logits - np.max(logits, axis=-1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=-1, keepdims=True))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-logits)))
