"""Shields the batcher from its observer: a failing metrics hook is logged, never propagated."""

from __future__ import annotations

import logging

from service.batching.types import BatcherObserver

logger = logging.getLogger(__name__)


class SafeObserver:
    """Forwards to a BatcherObserver; an exception there must not kill the dispatcher or a batch."""

    def __init__(self, inner: BatcherObserver) -> None:
        self._inner = inner

    def on_queue_depth(self, rows: int) -> None:
        try:
            self._inner.on_queue_depth(rows)
        except Exception:
            logger.exception("batcher observer failed in on_queue_depth")

    def on_rows_dropped(self, reason: str, rows: int) -> None:
        try:
            self._inner.on_rows_dropped(reason, rows)
        except Exception:
            logger.exception("batcher observer failed in on_rows_dropped")

    def on_rows_discarded(self, reason: str, rows: int) -> None:
        try:
            self._inner.on_rows_discarded(reason, rows)
        except Exception:
            logger.exception("batcher observer failed in on_rows_discarded")

    def on_batch(
        self, rows: int, padded_tokens: int, real_tokens: int, queue_waits_s: list[float], run_s: float
    ) -> None:
        try:
            self._inner.on_batch(rows, padded_tokens, real_tokens, queue_waits_s, run_s)
        except Exception:
            logger.exception("batcher observer failed in on_batch")
