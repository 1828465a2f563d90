"""Score functions over the last axis, computed the way the transformers pipelines compute them."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    # Max-shifted so large logits do not overflow; same operation order as the pipelines.
    shifted = np.exp(logits - np.max(logits, axis=-1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=-1, keepdims=True))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-logits)))
