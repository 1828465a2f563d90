"""How fast a model drains its queue, measured from completed batches, for Retry-After hints."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryAfterBounds:
    default_s: float = 1.0  # before any batch has been measured
    min_s: float = 0.05
    max_s: float = 30.0


class ThroughputEstimator:
    """Exponentially weighted rows per second of one runner, scaled by the number of runners.

    Per-run speed (rows / run time) is measured while a runner is busy, which is exactly the
    situation when the queue is full, so it estimates the drain rate under load rather than the
    (lower) rate of an idle service.
    """

    def __init__(self, runners: int, smoothing: float = 0.2, bounds: RetryAfterBounds | None = None) -> None:
        self._runners = runners
        self._smoothing = smoothing
        self._bounds = bounds or RetryAfterBounds()
        self._rows_per_s: float | None = None

    @property
    def rows_per_s(self) -> float | None:
        """Estimated rows per second across all runners, None before the first measurement."""
        return None if self._rows_per_s is None else self._rows_per_s * self._runners

    def record(self, rows: int, run_s: float) -> None:
        if rows <= 0 or run_s <= 0:
            return
        sample = rows / run_s
        previous = self._rows_per_s
        self._rows_per_s = sample if previous is None else previous + self._smoothing * (sample - previous)

    def retry_after_s(self, queued_rows: int) -> float:
        """Time to drain `queued_rows` at the measured rate, clamped to sane bounds."""
        rate = self.rows_per_s
        estimate = self._bounds.default_s if rate is None else queued_rows / rate
        return min(self._bounds.max_s, max(self._bounds.min_s, estimate))
